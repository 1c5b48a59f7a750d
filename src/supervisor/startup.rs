//! Start-up: everything the supervisor sets up before its first shard, in gunicorn's order: the pid
//! file, the listeners (with gunicorn's retries on a busy address), the log files handed to the
//! shards' user, the heartbeat region, and signal forwarding.
//!
//! It owns the typed [`StartError`] (any of them ends the supervisor with status 1) and returns what
//! the arbiter needs in [`Started`]. It must not spawn shards: the arbiter does, once it exists.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::Duration;

use signal_hook::consts::signal::*;
use socket2::Socket;
use tracing::{error, info, warn};

use super::Event;
use super::pidfile::{Pidfile, PidfileError};
use super::upgrade::Handover;
use crate::cli::format_cpu_list;
use crate::config::Config;
use crate::heartbeat::Heartbeats;
use crate::listener::shared::{self, Shared, SharedError};
use crate::listener::{self, ListenError, ListenOptions};

/// How many times a busy address is retried at start, a second apart (as gunicorn).
const BIND_ATTEMPTS: u32 = 5;

/// Why the supervisor could not start. Each is logged as one ERROR line before exiting 1.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// `-p`: the pid file names a live process or cannot be written.
    #[error(transparent)]
    Pidfile(#[from] PidfileError),
    /// The address stayed busy through every retry.
    #[error("Connection in use: {0}; Can't connect to {0}")]
    InUse(SocketAddr),
    /// Any other failure to create a listener.
    #[error(transparent)]
    Listen(ListenError),
    /// `getsockname` on the first listener.
    #[error("cannot read the bound address: {0}")]
    LocalAddr(io::Error),
    /// With `--user`/`--group`: a log file could not be created or given to that user.
    #[error("cannot hand {} to the shards' user: {source}", path.display())]
    HandLogs {
        /// The log file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The shared-memory heartbeat region.
    #[error("cannot create the heartbeat region: {0}")]
    Heartbeats(io::Error),
    /// `--metrics-bind`: the metrics listener.
    #[error("cannot serve metrics at {0} (--metrics-bind): {1}")]
    Metrics(std::net::SocketAddr, io::Error),
    /// The signal forwarding thread.
    #[error("cannot install signal handlers: {0}")]
    Signals(io::Error),
    /// A unix socket, an inherited descriptor or a later address (`-b`).
    #[error(transparent)]
    Shared(#[from] SharedError),
    /// USR2 with listeners shards share: not handed over yet (HUP is).
    #[error("USR2 cannot hand over unix:, fd:// or several -b listeners yet; use HUP")]
    SharedHandover,
    /// USR2: the old supervisor passed no listener to take the address from.
    #[error("the old supervisor passed no listener (HITCORE_UPGRADE)")]
    NothingInherited,
    /// USR2: an inherited listener could not be duplicated.
    #[error("cannot take over an inherited listener: {0}")]
    Inherit(io::Error),
}

/// What start-up hands to the arbiter.
#[derive(Debug)]
pub struct Started {
    /// The configuration, with `bind` holding the real port.
    pub config: Config,
    /// One listener per first shard, in shard order.
    pub listeners: Vec<Socket>,
    /// The listeners every shard shares (src/listener/shared.rs).
    pub shared: Shared,
    /// Removed when dropped, after the arbiter is done.
    pub pidfile: Option<Pidfile>,
    /// The heartbeat region shards write into.
    pub heartbeats: Arc<Heartbeats>,
    /// This binary, for spawning shards.
    pub exe: PathBuf,
    /// The watchdog's check period: SIGKILL follows SIGABRT after one more of these.
    pub check_period: Duration,
    /// For threads that report to the arbiter (the watchdog, and any added later).
    pub events: Sender<Event>,
    /// The arbiter's end of the event channel.
    pub inbox: Receiver<Event>,
}

/// Sets up everything before the first shard, logging gunicorn's start-up lines. Started by an old
/// supervisor's USR2 (`handover`), it serves the address of the inherited listeners instead of
/// binding `-b` (busy by design), and takes over the pid file.
pub fn start(mut config: Config, handover: Option<&mut Handover>) -> Result<Started, StartError> {
    let pid = std::process::id();
    let pidfile = match &config.pidfile {
        Some(path) => Some(Pidfile::take_over(path, handover.as_ref().map(|h| h.parent))?),
        None => None,
    };
    let upgrading = handover.is_some();
    let shared_binds = config.main_listener_shared() || config.binds.len() > 1;
    if handover.is_some() && shared_binds {
        return Err(StartError::SharedHandover);
    }
    let shared = Shared::open(&config.binds, config.bind_mode, ListenOptions::of(&config))?;
    let listeners = match (handover, shared.main.is_some()) {
        (None, true) => (0..config.cpus.len())
            .map(|_| shared.main_copy().unwrap_or_else(|| Err(io::Error::other("no shared listener"))))
            .collect::<io::Result<Vec<_>>>()
            .map_err(StartError::LocalAddr)?,
        (None, false) => match bind_all(&config) {
            Ok(listeners) => listeners,
            Err(e) => {
                shared.remove_paths();
                return Err(e);
            }
        },
        (Some(h), _) => {
            let first = h.listeners.first().ok_or(StartError::NothingInherited)?;
            config.bind = listener::local_addr(&first.socket).map_err(StartError::LocalAddr)?;
            // A listener whose old shard can hand it over is shared: the old shard stops accepting
            // once this supervisor's shards serve, and no listener closes. Any other shard gets a
            // listener of its own in the same reuseport group, listening only once the shard can
            // accept: if these shards cannot boot, no connection waits on them.
            let mut shared = h.listeners.iter().filter(|l| l.shared);
            let mut listeners = Vec::new();
            for _ in 0..config.cpus.len() {
                match shared.next() {
                    Some(l) => {
                        listeners.push(l.socket.try_clone().map_err(StartError::Inherit)?);
                        h.adopted.push(l.fd);
                    }
                    None => listeners
                        .push(listener::bind(config.bind, ListenOptions::of(&config)).map_err(StartError::Listen)?),
                }
            }
            listeners
        }
    };
    if !config.main_listener_shared() {
        config.bind = listener::local_addr(&listeners[0]).map_err(StartError::LocalAddr)?;
        let scheme = if config.https.is_some() { "https" } else { "http" };
        info!("Listening at: {scheme}://{} ({pid})", config.bind);
    }
    for sock in shared.all() {
        info!("Listening at: {} ({pid})", announce(&config, sock));
    }
    info!(
        "Using worker: glommio, {} shards on CPUs {} (thread-per-core, {})",
        config.cpus.len(),
        format_cpu_list(if config.pin { &config.cpus } else { &config.allowed_cpus }),
        if config.pin { "each pinned to its CPU" } else { "placed by the kernel" }
    );
    crate::redis::warn_at_start(&config);
    super::limits::fit_open_files(config.worker_connections);
    if listener::migrate_req() == Some(false) {
        warn!(
            "net.ipv4.tcp_migrate_req is 0: when a stalled shard is ejected, the connections queued on its \
             listener are reset instead of moving to the other shards; set it to 1 (sysctl -w \
             net.ipv4.tcp_migrate_req=1)"
        );
    }
    hand_logs_to_shards(&config)?;
    let heartbeats = Arc::new(Heartbeats::create().map_err(StartError::Heartbeats)?);
    let collector = crate::metrics::collect::install(heartbeats.clone());
    if let Some(addr) = config.observe.metrics_bind {
        // On USR2 the old supervisor still serves the address: share it until it exits.
        crate::metrics::server::start(addr, collector, !upgrading).map_err(|e| StartError::Metrics(addr, e))?;
    }
    let exe = this_binary();
    let (events, inbox) = mpsc::channel();
    forward_signals(events.clone()).map_err(StartError::Signals)?;
    let check_period = (config.timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
    Ok(Started { config, listeners, shared, pidfile, heartbeats, exe, check_period, events, inbox })
}

/// The path of this binary, resolved once: every spawn (HUP, TTIN, restarts, USR2) executes whatever
/// file is at this path then, so an upgrade that renames a new binary over it is picked up. If the
/// file was already replaced before start-up, Linux names it `PATH (deleted)`: the path is what counts.
fn this_binary() -> PathBuf {
    let Ok(exe) = std::env::current_exe() else { return PathBuf::from("/proc/self/exe") };
    match exe.to_str().and_then(|s| s.strip_suffix(" (deleted)")) {
        Some(path) => PathBuf::from(path),
        None => exe,
    }
}

/// Creates one listener per shard on the same address, after checking the address is free.
/// A busy address is retried like gunicorn does, then given up on.
fn bind_all(config: &Config) -> Result<Vec<Socket>, StartError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let result = listener::probe(config.bind).and_then(|()| {
            let first = listener::open(config.bind, ListenOptions::of(config))?;
            let addr = listener::local_addr(&first).map_err(|source| ListenError::Io {
                addr: config.bind,
                step: "getsockname",
                source,
            })?;
            let mut all = vec![first];
            for _ in 1..config.cpus.len() {
                all.push(listener::open(addr, ListenOptions::of(config))?);
            }
            Ok(all)
        });
        match result {
            Ok(all) => return Ok(all),
            Err(ListenError::InUse(addr)) if attempt < BIND_ATTEMPTS => {
                error!("Connection in use: {addr}");
                error!("Retrying in 1 second.");
                std::thread::sleep(Duration::from_secs(1));
            }
            Err(ListenError::InUse(addr)) => return Err(StartError::InUse(addr)),
            Err(e) => return Err(StartError::Listen(e)),
        }
    }
}

/// With `--user`/`--group`, shards open the log files as that user: create them now and give them
/// to it, so a root supervisor's files do not lock its shards out.
fn hand_logs_to_shards(config: &Config) -> Result<(), StartError> {
    if config.user.is_none() && config.group.is_none() {
        return Ok(());
    }
    let files = [Some(&config.error_log), config.access_log.as_ref()];
    for path in files.into_iter().flatten().filter_map(|t| match t {
        crate::logging::LogTarget::File(p) => Some(p),
        _ => None,
    }) {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|_| std::os::unix::fs::chown(path, config.user, config.group))
            .map_err(|source| StartError::HandLogs { path: path.clone(), source })?;
    }
    Ok(())
}

fn forward_signals(events: Sender<Event>) -> io::Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([
        SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGTTIN, SIGTTOU, SIGUSR1, SIGUSR2, SIGCHLD, SIGWINCH,
    ])?;
    std::thread::Builder::new().name("hitcore-signals".into()).spawn(move || {
        for sig in signals.forever() {
            if events.send(Event::Signal(sig)).is_err() {
                return;
            }
        }
    })?;
    Ok(())
}

/// How a shared listener is announced: `https://` for a TCP one when HTTPS is on, as gunicorn says.
pub(super) fn announce(config: &Config, sock: &socket2::Socket) -> String {
    let text = shared::describe(sock);
    match (&config.https, text.strip_prefix("http://")) {
        (Some(_), Some(addr)) => format!("https://{addr}"),
        _ => text,
    }
}
