//! Test harness: a real redis-server and the real `hitcore` binary, each on a free port, each torn
//! down when its guard drops, plus a raw-bytes HTTP client.
//!
//! Nothing here sleeps to wait for start-up: both processes are watched through their logs, and
//! every wait has a deadline that fails the test instead of hanging it. Tests only ever signal the
//! processes these guards started.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Certificates for the TLS topologies.
pub mod certs;
/// A Redis Cluster and the operator actions on it.
pub mod cluster;
/// The bounded load of a failover test and the judgement of its answers.
pub mod failover_load;
/// HTTPS: a CA that signs certificates on demand, and a rustls client.
pub mod https;
/// Sentinel and Cluster topologies and the failover actions.
pub mod topology;

/// Every wait in the tests is bounded by this unless a test says otherwise.
pub const DEADLINE: Duration = Duration::from_secs(20);

pub const PASSWORD: &str = "p@ss word/é";

/// Lines a child process has printed, shared with the thread that reads them.
#[derive(Clone, Default)]
pub struct Log(Arc<(Mutex<Vec<String>>, Condvar)>);

impl Log {
    fn follow(&self, stream: impl Read + Send + 'static, echo: &'static str) {
        let log = self.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                if std::env::var_os("HITCORE_TEST_ECHO").is_some() {
                    eprintln!("{echo}: {line}");
                }
                let (lines, cv) = &*log.0;
                lines.lock().unwrap().push(line);
                cv.notify_all();
            }
        });
    }

    /// Follows a log file by path, as `tail -F` does (a renamed-and-recreated file is followed
    /// anew), until this log is dropped by everyone else.
    fn follow_file(&self, path: PathBuf) {
        let log = self.clone();
        std::thread::spawn(move || {
            use std::os::unix::fs::MetadataExt;
            let mut inode = 0;
            let mut offset = 0usize;
            let mut partial = String::new();
            while Arc::strong_count(&log.0) > 1 {
                if let Ok(meta) = std::fs::metadata(&path) {
                    if meta.ino() != inode {
                        (inode, offset) = (meta.ino(), 0);
                        partial.clear();
                    }
                    let bytes = std::fs::read(&path).unwrap_or_default();
                    if bytes.len() > offset {
                        partial.push_str(&String::from_utf8_lossy(&bytes[offset..]));
                        offset = bytes.len();
                        let (lines, cv) = &*log.0;
                        while let Some(nl) = partial.find('\n') {
                            lines.lock().unwrap().push(partial[..nl].to_string());
                            partial.drain(..=nl);
                        }
                        cv.notify_all();
                    }
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        });
    }

    /// Waits until some line contains `needle`, returns it; panics at the deadline.
    pub fn wait_for(&self, needle: &str, within: Duration) -> String {
        self.wait_for_count(needle, 1, within).pop().unwrap()
    }

    /// Waits until `n` lines contain `needle`; returns them.
    pub fn wait_for_count(&self, needle: &str, n: usize, within: Duration) -> Vec<String> {
        let deadline = Instant::now() + within;
        let (lines, cv) = &*self.0;
        let mut guard = lines.lock().unwrap();
        loop {
            let found: Vec<String> = guard.iter().filter(|l| l.contains(needle)).cloned().collect();
            if found.len() >= n {
                return found;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                panic!("timed out waiting for {n}x {needle:?}; log so far:\n{}", guard.join("\n"));
            }
            guard = cv.wait_timeout(guard, left).unwrap().0;
        }
    }

    pub fn count(&self, needle: &str) -> usize {
        self.0.0.lock().unwrap().iter().filter(|l| l.contains(needle)).count()
    }

    pub fn lines(&self) -> Vec<String> {
        self.0.0.lock().unwrap().clone()
    }

    /// How many lines so far (a mark for [`Log::count_since`]).
    pub fn len(&self) -> usize {
        self.0.0.lock().unwrap().len()
    }

    /// As [`Log::count`], over the lines after `mark` only (a long run's log is long).
    pub fn count_since(&self, mark: usize, needle: &str) -> usize {
        self.0.0.lock().unwrap().iter().skip(mark).filter(|l| l.contains(needle)).count()
    }
}

/// A free TCP port on 127.0.0.1 (bound, read, released) that this test run has not handed out
/// before. The kernel hands a released port out again soon (20,000 draws here gave 10,673
/// distinct ports), and a test that stops a Redis on purpose must not find another test's Redis,
/// with the same password, answering on its port when it reconnects.
pub fn free_port() -> u16 {
    let mut port = 0;
    for _ in 0..64 {
        port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        if claim_port(port) {
            break;
        }
    }
    port
}

/// Marks `port` handed out; false if it was before. A run that has used nearly every ephemeral
/// port gets repeats back from [`free_port`] after 64 tries, as it did before this check.
pub fn claim_port(port: u16) -> bool {
    static HANDED_OUT: Mutex<Option<std::collections::HashSet<u16>>> = Mutex::new(None);
    HANDED_OUT.lock().unwrap().get_or_insert_with(Default::default).insert(port)
}

/// A path under the temporary directory that no other caller in this test run gets:
/// `{stem}-{pid}-{n}{suffix}`, `n` counting up. Names used to end in a `free_port()`, which is
/// not unique: a port read and released is handed out again. Two live cluster nodes once got
/// the same scratch directory that way; the first test to finish deleted it, and the other
/// node died at its next config save ("Fatal: can't update cluster config file"), failing a
/// failover test in CI twice as "connection refused" from a node nobody had killed.
pub fn temp_path(stem: &str, suffix: &str) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    std::env::temp_dir().join(format!("{stem}-{}-{n}{suffix}", std::process::id()))
}

/// A fresh directory of its own. `create_dir`, not `create_dir_all`: a name that already
/// exists (left by an earlier run whose pid this one reuses) is removed first, so a node never
/// starts in a directory that holds another's files.
pub fn scratch_dir(tag: &str) -> PathBuf {
    let dir = temp_path(&format!("hitcore-test-{tag}"), "");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir(&dir).unwrap();
    dir
}

/// A redis-server of our own, with a password, on a free port and a unix socket.
pub struct TestRedis {
    child: Option<Child>,
    pub port: u16,
    pub password: Option<String>,
    pub dir: PathBuf,
    pub log: Log,
    /// Keep the data across restarts (append-only file, fsync on every write).
    pub durable: bool,
    /// More `redis-server` arguments (TLS ports, `--replicaof`), after the harness's own.
    pub extra: Vec<String>,
}

impl TestRedis {
    pub fn start() -> TestRedis {
        Self::start_with(Some(PASSWORD))
    }

    pub fn start_with(password: Option<&str>) -> TestRedis {
        Self::start_args(password, &[])
    }

    /// A redis-server with more arguments; `{dir}` in them becomes its scratch directory.
    pub fn start_args(password: Option<&str>, extra: &[&str]) -> TestRedis {
        let dir = scratch_dir("redis");
        let extra = extra.iter().map(|a| a.replace("{dir}", dir.to_str().unwrap())).collect();
        let mut redis = TestRedis {
            child: None,
            port: free_port(),
            password: password.map(str::to_string),
            dir,
            log: Log::default(),
            durable: false,
            extra,
        };
        redis.launch();
        redis
    }

    /// A redis-server whose counter survives `restart()`, so values can be compared across it.
    pub fn start_durable() -> TestRedis {
        let mut redis = TestRedis {
            child: None,
            port: free_port(),
            password: Some(PASSWORD.into()),
            dir: scratch_dir("redis"),
            log: Log::default(),
            durable: true,
            extra: Vec::new(),
        };
        redis.launch();
        redis
    }

    fn launch(&mut self) {
        let mut cmd = Command::new("redis-server");
        let aof = if self.durable {
            ["--appendonly", "yes", "--appendfsync", "always"]
        } else {
            ["--appendonly", "no", "--appendfsync", "no"]
        };
        cmd.args([
            "--port",
            &self.port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--dir",
            self.dir.to_str().unwrap(),
        ])
        .args(aof)
        .args(["--unixsocket", self.socket().to_str().unwrap(), "--logfile", ""])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
        if let Some(p) = &self.password {
            cmd.args(["--requirepass", p]);
        }
        cmd.args(&self.extra);
        let mut child = cmd.spawn().expect("redis-server must be installed (apt-get install redis-server)");
        self.log = Log::default();
        self.log.follow(child.stdout.take().unwrap(), "redis");
        self.child = Some(child);
        self.log.wait_for("Ready to accept connections", DEADLINE);
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("redis.sock")
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    /// `redis://:password@127.0.0.1:port/db`, percent-encoded.
    pub fn url(&self, db: u32) -> String {
        match &self.password {
            Some(p) => format!("redis://:{}@127.0.0.1:{}/{db}", percent(p), self.port),
            None => format!("redis://127.0.0.1:{}/{db}", self.port),
        }
    }

    /// Runs one command (after AUTH and SELECT) and returns the reply's text.
    pub fn cmd(&self, db: u32, args: &[&str]) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(DEADLINE)).unwrap();
        let mut out = Vec::new();
        let mut replies = 1;
        if let Some(p) = &self.password {
            encode(&mut out, &["AUTH", p]);
            replies += 1;
        }
        encode(&mut out, &["SELECT", &db.to_string()]);
        encode(&mut out, args);
        replies += 1;
        s.write_all(&out).unwrap();
        let mut reader = BufReader::new(s);
        let mut last = String::new();
        for _ in 0..replies {
            last.clear();
            reader.read_line(&mut last).unwrap();
            if let Some(len) = last.strip_prefix('$') {
                let len: i64 = len.trim().parse().unwrap();
                if len < 0 {
                    last = "(nil)".into();
                    continue;
                }
                let mut body = vec![0; len as usize + 2];
                reader.read_exact(&mut body).unwrap();
                last = String::from_utf8_lossy(&body[..len as usize]).into_owned();
                continue;
            }
        }
        last.trim_end().trim_start_matches([':', '+']).to_string()
    }

    /// Kills redis-server outright (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port.
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn encode(out: &mut Vec<u8>, args: &[&str]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
    }
}

pub fn percent(s: &str) -> String {
    s.bytes().map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

/// The real `hitcore` binary, bound to a free port, in its own process group.
pub struct TestServer {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub log: Log,
    pub status: Option<ExitStatus>,
}

impl TestServer {
    /// Starts `hitcore -b 127.0.0.1:0 ARGS` (or ARGS with their own `-b`) and waits until it says
    /// where it listens.
    pub fn start(args: &[&str]) -> TestServer {
        Self::start_with(args, |_| {})
    }

    /// As [`TestServer::start`], with a hook to adjust the command (environment, limits).
    pub fn start_with(args: &[&str], adjust: impl FnOnce(&mut Command)) -> TestServer {
        Self::start_exe(env!("CARGO_BIN_EXE_hitcore").as_ref(), args, adjust)
    }

    /// As [`TestServer::start_with`], running the binary at `exe` (a copy an upgrade test replaces).
    pub fn start_exe(exe: &std::path::Path, args: &[&str], adjust: impl FnOnce(&mut Command)) -> TestServer {
        let mut cmd = Command::new(exe);
        // A test that names its own address (another loopback address) binds that instead.
        if !args.iter().any(|a| *a == "-b" || *a == "--bind") {
            cmd.args(["-b", "127.0.0.1:0"]);
        }
        cmd.args(args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        cmd.env_remove("REDIS_URL").process_group(0);
        adjust(&mut cmd);
        let mut child = cmd.spawn().expect("spawn hitcore");
        let log = Log::default();
        log.follow(child.stderr.take().unwrap(), "hitcore");
        // With --error-logfile, the log lines go to that file instead of stderr.
        if let Some(i) = args.iter().position(|a| *a == "--error-logfile") {
            log.follow_file(PathBuf::from(args[i + 1]));
        }
        // The guard exists before the first wait, so a failed wait still kills the server.
        let mut server = TestServer { child: Some(child), addr: "0.0.0.0:0".parse().unwrap(), log, status: None };
        // http:// or https://
        let line = server.log.wait_for("Listening at: http", DEADLINE);
        server.addr = line.split("://").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
        server
    }

    /// Runs `cmd` as the server (any program that becomes hitcore: `systemd-socket-activate`, or
    /// hitcore with binds of its own) in its own process group, and waits for `ready` in its
    /// stderr. `addr` is the first `Listening at: http://` (or `https://`) address, if any.
    pub fn from_command(mut cmd: Command, ready: &str) -> TestServer {
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        cmd.env_remove("REDIS_URL").process_group(0);
        let mut child = cmd.spawn().expect("spawn the server");
        let log = Log::default();
        log.follow(child.stderr.take().unwrap(), "hitcore");
        let mut server = TestServer { child: Some(child), addr: "0.0.0.0:0".parse().unwrap(), log, status: None };
        server.log.wait_for(ready, DEADLINE);
        if let Some(line) = server.log.lines().iter().find(|l| l.contains("Listening at: http")) {
            server.addr = line.split("://").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
        }
        server
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(0)
    }

    /// Waits until `n` shards are connected to Redis.
    pub fn wait_ready(&self, n: usize) {
        self.log.wait_for_count("Connected to Redis", n, DEADLINE);
    }

    /// The pids of the shards that have logged "Booting worker", in order of appearance.
    pub fn shard_pids(&self) -> Vec<i32> {
        self.log
            .lines()
            .iter()
            .filter_map(|l| l.split("Booting worker with pid: ").nth(1))
            .map(|rest| rest.split(' ').next().unwrap().parse().unwrap())
            .collect()
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.pid(), sig) };
    }

    /// Waits for the supervisor to exit; panics at the deadline.
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        if let Some(s) = self.status {
            return s;
        }
        let deadline = Instant::now() + within;
        let child = self.child.as_mut().unwrap();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.status = Some(status);
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "hitcore did not exit in {within:?}; log:\n{}",
                self.log.lines().join("\n")
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops the server gracefully and returns the per-shard request counts it reported.
    pub fn stop(&mut self) -> Vec<u64> {
        self.signal(libc::SIGTERM);
        let status = self.wait_exit(DEADLINE);
        assert!(status.success(), "hitcore exited with {status}; log:\n{}", self.log.lines().join("\n"));
        // The supervisor's last line comes after every shard's (it waits for their relays), but
        // this process's reader may not have read it yet when the exit is seen: wait for it, so
        // no shard's "served" line is missed (where this log has the supervisor's INFO lines).
        if self.log.lines().iter().any(|l| l.contains("Listening at: ")) {
            self.log.wait_for("Shutting down: Master", DEADLINE);
        }
        self.log
            .lines()
            .iter()
            .filter_map(|l| l.split(" served ").nth(1))
            .map(|rest| rest.split(' ').next().unwrap().parse().unwrap())
            .collect()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if self.status.is_none() {
                // Everything in the group is ours: the supervisor and its shards.
                // SAFETY: killpg on the process group this guard created.
                unsafe { libc::killpg(child.id() as i32, libc::SIGKILL) };
            }
            let _ = child.wait();
        }
    }
}

/// One parsed HTTP response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn value(&self) -> i64 {
        assert_eq!(self.status, 200, "not a 200: {self:?}");
        self.text().parse().unwrap_or_else(|_| panic!("body is not a number: {self:?}"))
    }
}

/// A raw HTTP/1.x client connection.
pub struct Client {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        stream.set_nodelay(true).unwrap();
        Client { stream, buf: Vec::new() }
    }

    /// A client on a stream connected some other way (from a chosen source address).
    pub fn from_stream(stream: TcpStream) -> Client {
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        Client { stream, buf: Vec::new() }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Reads one response; `head_only` for responses to HEAD (no body whatever the headers say).
    pub fn read_response(&mut self, head_only: bool) -> Response {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut resp = httparse::Response::new(&mut headers);
            if let httparse::Status::Complete(n) = resp.parse(&self.buf).expect("valid response head") {
                let status = resp.code.unwrap();
                let headers: Vec<(String, String)> = resp
                    .headers
                    .iter()
                    .map(|h| (h.name.to_string(), String::from_utf8_lossy(h.value).into_owned()))
                    .collect();
                let len = if head_only {
                    0
                } else {
                    headers
                        .iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                        .map(|(_, v)| v.parse().unwrap())
                        .expect("responses carry Content-Length")
                };
                while self.buf.len() < n + len {
                    self.fill();
                }
                let body = self.buf[n..n + len].to_vec();
                self.buf.drain(..n + len);
                return Response { status, headers, body };
            }
            self.fill();
        }
    }

    fn fill(&mut self) {
        let mut chunk = [0u8; 4096];
        let n = self.stream.read(&mut chunk).expect("read from hitcore");
        assert!(n > 0, "connection closed mid-response; have {:?}", String::from_utf8_lossy(&self.buf));
        self.buf.extend_from_slice(&chunk[..n]);
    }

    /// Asserts the server closes the connection (EOF or reset) with no further bytes.
    pub fn assert_closed(&mut self) {
        assert!(self.buf.is_empty(), "unexpected bytes: {:?}", String::from_utf8_lossy(&self.buf));
        let mut chunk = [0u8; 64];
        match self.stream.read(&mut chunk) {
            Ok(0) => {}
            Ok(n) => panic!("expected close, got {:?}", String::from_utf8_lossy(&chunk[..n])),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("expected close, got {e}"),
        }
    }

    /// Sends one request and reads its response.
    pub fn request(&mut self, raw: &str) -> Response {
        self.send(raw.as_bytes());
        self.read_response(raw.starts_with("HEAD "))
    }
}

/// `GET / HTTP/1.1` with a Host header.
pub const GET: &str = "GET / HTTP/1.1\r\nHost: test\r\n\r\n";

/// One request on a fresh connection.
pub fn get_once(addr: SocketAddr, raw: &str) -> Response {
    Client::connect(addr).request(raw)
}

/// What one request of a [`Load`] came to.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// A response: status, and the counter value for a 200.
    Answered { status: u16, value: Option<i64> },
    /// The connection was refused: nothing listened, so no request was accepted.
    Refused,
    /// Connected, then no complete response (reset, early close, or timeout).
    Failed(String),
}

/// A bounded load from the test itself: threads that each open a connection per request (as ab
/// does), until stopped. Every outcome is kept with the moment it was seen.
pub struct Load {
    stop: Arc<std::sync::atomic::AtomicBool>,
    handles: Vec<std::thread::JoinHandle<Vec<(Instant, Outcome)>>>,
}

impl Load {
    pub fn start(addr: SocketAddr, threads: usize) -> Load {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let handles = (0..threads)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut seen = Vec::new();
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let outcome = one_request(addr);
                        if matches!(outcome, Outcome::Refused) {
                            // Nothing listens right now; do not spin on it.
                            std::thread::sleep(Duration::from_millis(5));
                        }
                        seen.push((Instant::now(), outcome));
                    }
                    seen
                })
            })
            .collect();
        Load { stop, handles }
    }

    /// Stops the load and returns every outcome, in time order.
    pub fn finish(self) -> Vec<(Instant, Outcome)> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut all: Vec<_> = self.handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
        all.sort_by_key(|(t, _)| *t);
        all
    }
}

/// One request on a fresh connection (`Connection: close`), never panicking: the outcome says what happened.
pub fn one_request(addr: SocketAddr) -> Outcome {
    let stream = match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return Outcome::Refused,
        Err(e) => return Outcome::Failed(format!("connect: {e}")),
    };
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut c = Client { stream, buf: Vec::new() };
    if let Err(e) = c.stream.write_all(b"GET / HTTP/1.1\r\nHost: load\r\nConnection: close\r\n\r\n") {
        return Outcome::Failed(format!("write: {e}"));
    }
    let mut all = Vec::new();
    if let Err(e) = c.stream.read_to_end(&mut all) {
        if all.is_empty() {
            return Outcome::Failed(format!("read: {e}"));
        }
    }
    c.buf = all;
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    match resp.parse(&c.buf) {
        Ok(httparse::Status::Complete(n)) => {
            let status = resp.code.unwrap_or(0);
            let value = if status == 200 { String::from_utf8_lossy(&c.buf[n..]).parse().ok() } else { None };
            Outcome::Answered { status, value }
        }
        _ => Outcome::Failed(format!("incomplete response ({} bytes)", c.buf.len())),
    }
}

/// Counts of a load's outcomes.
#[derive(Debug, Default)]
pub struct Tally {
    pub ok: usize,
    pub non_200: usize,
    pub refused: usize,
    pub failed: Vec<String>,
    pub values: Vec<i64>,
}

pub fn tally<'a>(outcomes: impl IntoIterator<Item = &'a (Instant, Outcome)>) -> Tally {
    let mut t = Tally::default();
    for (_, o) in outcomes {
        match o {
            Outcome::Answered { status: 200, value } => {
                t.ok += 1;
                t.values.extend(value);
            }
            Outcome::Answered { .. } => t.non_200 += 1,
            Outcome::Refused => t.refused += 1,
            Outcome::Failed(why) => t.failed.push(why.clone()),
        }
    }
    t
}

impl Tally {
    /// The counts a closing note reports: every request sent, and what became of it.
    pub fn summary(&self) -> String {
        let sent = self.ok + self.non_200 + self.refused + self.failed.len();
        format!(
            "{sent} sent: {} answered 200, {} answered non-200 (503), {} refused at connect, {} failed",
            self.ok,
            self.non_200,
            self.refused,
            self.failed.len()
        )
    }
}

/// Asserts no counter value appears twice.
pub fn assert_unique(values: &[i64]) {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    for w in sorted.windows(2) {
        assert_ne!(w[0], w[1], "value {} was returned twice", w[0]);
    }
}

/// Polls `check` until it holds, failing the test at `within`.
pub fn wait_until(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether a process exists (and is not a zombie we have not reaped).
pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.rsplit(')').next().map(|r| !r.trim_start().starts_with('Z')).unwrap_or(false))
        .unwrap_or(false)
}
