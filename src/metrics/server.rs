//! `--metrics-bind`: the supervisor's `/metrics` endpoint, on a thread of its own.
//!
//! A blocking std listener; each connection is served on a short-lived thread of its own, at most
//! [`MAX_CLIENTS`] at once (beyond that a connection gets a 503 and is closed at once), and each
//! request has [`DEADLINE`] in total to arrive and be answered, however its bytes trickle in. So a
//! slow or silent client never delays a scrape: the scrape is served beside it. A scrape is a few
//! kilobytes once a second or so, and nothing here may reach a shard's event loop.
//! It owns request reading (bounded in time and size) and the answer; the numbers come from the
//! [`Collector`]. Bad requests get a 4xx and the connection closes; no error here stops the thread
//! or the supervisor.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};
use tracing::{debug, error, info};

use super::collect::Collector;
use super::encode::{CONTENT_TYPE, encode};

/// The most a request may take, in total, to arrive and be answered: a deadline for the whole
/// request, not for each read, so a client sending a byte every few seconds is closed all the same.
const DEADLINE: Duration = Duration::from_secs(5);
/// Connections served at once. Prometheus scrapes one at a time; the rest of the cap is room for
/// slow or hostile clients, each gone by [`DEADLINE`]. Beyond it: 503 and close, without a read.
const MAX_CLIENTS: usize = 32;
/// The longest request head accepted.
const MAX_HEAD: usize = 8192;

/// Binds `addr` (so a bad address fails start-up with a clear error) and starts the thread.
///
/// With SO_REUSEPORT, as the shards' listeners: on USR2 the new supervisor binds the same address
/// while the old one still serves it, and the old one's socket goes when it exits. Otherwise
/// (`exclusive`) the address is first probed without SO_REUSEPORT, so that another server already
/// there is an error rather than a silent share of its scrapes.
pub fn start(addr: SocketAddr, collector: Arc<Collector>, exclusive: bool) -> std::io::Result<SocketAddr> {
    if exclusive && addr.port() != 0 {
        let probe = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        probe.set_reuse_address(true)?;
        probe.bind(&addr.into())?;
    }
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_cloexec(true)?;
    socket.bind(&addr.into())?;
    socket.listen(64)?;
    let listener: TcpListener = socket.into();
    let local = listener.local_addr()?;
    std::thread::Builder::new().name("hitcore-metrics".into()).spawn(move || {
        let active = Arc::new(AtomicUsize::new(0));
        for conn in listener.incoming() {
            match conn {
                Ok(stream) => dispatch(stream, &collector, &active),
                Err(e) => {
                    // EMFILE and friends: do not spin.
                    error!("metrics listener: accept failed: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    })?;
    info!("Serving metrics at: http://{local}/metrics");
    Ok(local)
}

/// Holds one of the [`MAX_CLIENTS`] places for as long as a connection's thread lives.
struct Place(Arc<AtomicUsize>);

impl Drop for Place {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Serves `stream` on a thread of its own, or refuses it when [`MAX_CLIENTS`] are being served.
fn dispatch(stream: TcpStream, collector: &Arc<Collector>, active: &Arc<AtomicUsize>) {
    if active.fetch_add(1, Ordering::AcqRel) >= MAX_CLIENTS {
        active.fetch_sub(1, Ordering::AcqRel);
        refuse(stream);
        return;
    }
    let place = Place(active.clone());
    let collector = collector.clone();
    let spawned = std::thread::Builder::new().name("hitcore-metrics-conn".into()).spawn(move || {
        let _place = place;
        if let Err(e) = serve(stream, &collector, Instant::now() + DEADLINE) {
            debug!("metrics connection: {e}");
        }
    });
    if let Err(e) = spawned {
        error!("metrics: cannot start a thread for a connection: {e}");
    }
}

/// A 503 written without waiting (whatever the socket buffer takes), then close.
fn refuse(mut stream: TcpStream) {
    let _ = stream.set_nonblocking(true);
    let _ = stream.write(
        b"HTTP/1.1 503 Service Unavailable\r\nServer: hitcore\r\nContent-Length: 0\r\nRetry-After: 1\r\n\
          Connection: close\r\n\r\n",
    );
    debug!("metrics: {MAX_CLIENTS} connections already served, one refused");
}

/// The time left before `deadline`, or a timed-out error once it has passed.
fn left(deadline: Instant) -> std::io::Result<Option<Duration>> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "the request's deadline passed"));
    }
    Ok(Some(left))
}

fn serve(mut stream: TcpStream, collector: &Collector, deadline: Instant) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    let complete = loop {
        if head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n") {
            break true;
        }
        if head.len() > MAX_HEAD {
            break false;
        }
        stream.set_read_timeout(left(deadline)?)?;
        match stream.read(&mut buf)? {
            0 => break false,
            n => head.extend_from_slice(&buf[..n]),
        }
    };
    let (status, body, head_only) = if complete {
        route(&head, collector)
    } else if head.len() > MAX_HEAD {
        ("431 Request Header Fields Too Large", "request head too large\n".to_string(), false)
    } else {
        return Ok(());
    };
    let content_type = if status.starts_with("200") { CONTENT_TYPE } else { "text/plain; charset=utf-8" };
    let mut out = format!(
        "HTTP/1.1 {status}\r\nServer: hitcore\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n",
        body.len()
    );
    if status.starts_with("405") {
        out.push_str("Allow: GET, HEAD\r\n");
    }
    out.push_str("\r\n");
    if !head_only {
        out.push_str(&body);
    }
    stream.set_write_timeout(left(deadline)?)?;
    stream.write_all(out.as_bytes())?;
    let _ = stream.shutdown(std::net::Shutdown::Write);
    Ok(())
}

/// The status, body and whether to leave the body out (HEAD) for a complete request head.
fn route(head: &[u8], collector: &Collector) -> (&'static str, String, bool) {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return ("400 Bad Request", "bad request line\n".into(), false);
    };
    if !version.starts_with(b"HTTP/1.") {
        return ("400 Bad Request", "bad request line\n".into(), false);
    }
    let path = target.split(|&b| b == b'?').next().unwrap_or_default();
    if path != b"/metrics" {
        return ("404 Not Found", "not found: the metrics are at /metrics\n".into(), false);
    }
    match method {
        b"GET" => ("200 OK", encode(&collector.snapshot()), false),
        b"HEAD" => ("200 OK", encode(&collector.snapshot()), true),
        _ => ("405 Method Not Allowed", "method not allowed\n".into(), false),
    }
}
