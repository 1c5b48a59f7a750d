//! Listeners that every shard shares instead of one per shard: unix sockets (`-b unix:PATH`),
//! inherited descriptors (`-b fd://N`) and the sockets systemd passes (socket activation).
//!
//! A unix socket has no SO_REUSEPORT group, and a passed socket cannot be split into one (the
//! kernel only lets sockets of the same owner share a group, and systemd's belong to PID 1), so
//! each of these is one socket, one accept queue, from which every shard accepts. This module owns
//! creating, adopting and removing them; it must not accept connections, and nothing here may be
//! ejected or shut down while shards share it (that would stop every shard at once).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use socket2::{Domain, SockAddr, Socket, Type};

use super::{ListenError, ListenOptions};
use crate::bind::Bind;

/// Why a shared listener could not be had, naming the path or descriptor.
#[derive(Debug, thiserror::Error)]
pub enum SharedError {
    /// Something accepts connections on the path already.
    #[error("Connection in use: unix:{}", .0.display())]
    InUse(PathBuf),
    /// The path exists and is not a socket: never removed.
    #[error("cannot listen on unix:{}: it exists and is not a socket", .0.display())]
    NotASocket(PathBuf),
    /// A step on the path failed.
    #[error("cannot listen on unix:{}: {step}: {source}", path.display())]
    Path {
        /// The path.
        path: PathBuf,
        /// What was being done.
        step: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// A TCP address after the first: the same errors as a per-shard listener.
    #[error(transparent)]
    Tcp(#[from] ListenError),
    /// An inherited descriptor that is not a listening stream socket.
    #[error("fd://{fd} is not a listening stream socket: {reason}")]
    NotAListener {
        /// The descriptor.
        fd: RawFd,
        /// What it is instead.
        reason: String,
    },
}

/// The listeners all shards share, opened by the supervisor at start-up. The first bind is every
/// shard's main listener: one SO_REUSEPORT listener per shard when it is TCP (not here), or copies
/// of `main` otherwise. Every later bind is one socket in `extras`, on which every shard accepts
/// too (so only the first TCP address gets per-shard queues).
#[derive(Debug, Default)]
pub struct Shared {
    /// The first bind when it is not TCP.
    pub main: Option<Socket>,
    /// Every bind after the first.
    pub extras: Vec<Socket>,
    /// The unix socket paths created here, removed on exit.
    pub paths: Vec<PathBuf>,
}

impl Shared {
    /// Opens what `binds` needs beyond per-shard TCP listeners. Nothing is left open or created
    /// on the file system when one of them fails.
    pub fn open(binds: &[Bind], mode: Option<u32>, options: ListenOptions) -> Result<Shared, SharedError> {
        let mut shared = Shared::default();
        for (i, bind) in binds.iter().enumerate() {
            let sock = match bind {
                Bind::Tcp(_) if i == 0 => continue,
                Bind::Tcp(addr) => super::probe(*addr).and_then(|()| super::open(*addr, options)).map_err(Into::into),
                Bind::Unix(path) => {
                    let sock = open_unix(path, mode, Some(options.backlog));
                    if sock.is_ok() {
                        shared.paths.push(path.clone());
                    }
                    sock
                }
                Bind::Fd(fd) | Bind::Activated { fd, .. } => adopt(*fd),
            };
            let sock = match sock {
                Ok(sock) => sock,
                Err(e) => {
                    shared.remove_paths();
                    return Err(e);
                }
            };
            if i == 0 {
                shared.main = Some(sock);
            } else {
                shared.extras.push(sock);
            }
        }
        Ok(shared)
    }

    /// A copy of the main listener for one more shard, when the first bind is shared.
    pub fn main_copy(&self) -> Option<io::Result<Socket>> {
        self.main.as_ref().map(Socket::try_clone)
    }

    /// Makes every later bind listen (those a HUP added are opened bound only): called once a
    /// shard that serves them has booted, so no bind listens before someone accepts on it.
    pub fn listen_served(&self, backlog: u32) {
        for sock in self.extras.iter().filter(|s| !super::is_listening(s)) {
            if let Err(e) = sock.listen(backlog.min(i32::MAX as u32) as i32) {
                tracing::error!("cannot listen at {}: {e}", describe(sock));
            }
        }
    }

    /// Every shared listener, for the start-up log.
    pub fn all(&self) -> impl Iterator<Item = &Socket> {
        self.main.iter().chain(&self.extras)
    }

    /// Removes the unix sockets created at start-up (on exit).
    pub fn remove_paths(&self) {
        for path in &self.paths {
            remove_unix(path);
        }
    }
}

/// Creates a unix socket at `path`, non-blocking and close-on-exec, with `mode` (octal
/// permissions) applied before it listens, so no client can connect under looser permissions;
/// listening with `backlog`, or only bound when it is `None` (a bind a HUP adds listens once a
/// shard serving it has booted: [`Shared::listen_served`]). A stale socket file (nothing accepts
/// on it: a crashed server's) is replaced; a live one, or a file that is not a socket, is refused.
pub fn open_unix(path: &Path, mode: Option<u32>, backlog: Option<u32>) -> Result<Socket, SharedError> {
    let err = |step| move |source| SharedError::Path { path: path.to_path_buf(), step, source };
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(SharedError::NotASocket(path.to_path_buf()));
        }
        match std::os::unix::net::UnixStream::connect(path) {
            Ok(_) => return Err(SharedError::InUse(path.to_path_buf())),
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                std::fs::remove_file(path).map_err(err("remove the stale socket"))?;
            }
            Err(e) => return Err(err("connect to the existing socket")(e)),
        }
    }
    let sock = Socket::new(Domain::UNIX, Type::STREAM.cloexec(), None).map_err(err("socket"))?;
    sock.set_nonblocking(true).map_err(err("O_NONBLOCK"))?;
    let addr = SockAddr::unix(path).map_err(err("address"))?;
    sock.bind(&addr).map_err(|e| match e.kind() {
        io::ErrorKind::AddrInUse => SharedError::InUse(path.to_path_buf()),
        _ => err("bind")(e),
    })?;
    if let Some(mode) = mode {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(err("chmod"))?;
    }
    if let Some(backlog) = backlog {
        sock.listen(backlog.min(i32::MAX as u32) as i32).map_err(err("listen"))?;
    }
    Ok(sock)
}

/// Removes a unix socket this process created, on exit. Only if it is still a socket: never a
/// file someone put there since.
pub fn remove_unix(path: &Path) {
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket()) {
        let _ = std::fs::remove_file(path);
    }
}

/// Takes ownership of an inherited descriptor (`fd://N`, or one systemd passed) after checking it
/// is a listening stream socket, and makes it non-blocking and close-on-exec like the listeners
/// hitcore opens. Each descriptor may be adopted once.
pub fn adopt(fd: RawFd) -> Result<Socket, SharedError> {
    let refuse = |reason: String| SharedError::NotAListener { fd, reason };
    let int_option = |option| -> io::Result<libc::c_int> {
        let mut value: libc::c_int = 0;
        let mut len = size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: any fd number is safe to ask; the pointer and length describe an int.
        let rc = unsafe {
            libc::getsockopt(fd, libc::SOL_SOCKET, option, (&mut value as *mut libc::c_int).cast(), &mut len)
        };
        if rc == 0 { Ok(value) } else { Err(io::Error::last_os_error()) }
    };
    let kind = int_option(libc::SO_TYPE).map_err(|e| refuse(e.to_string()))?;
    if kind != libc::SOCK_STREAM {
        return Err(refuse("not a stream socket".into()));
    }
    if int_option(libc::SO_ACCEPTCONN).map_err(|e| refuse(e.to_string()))? == 0 {
        return Err(refuse("not listening".into()));
    }
    // SAFETY: the fd is an open socket (getsockopt succeeded on it) that this process inherited
    // and nothing else in it owns; the caller adopts each descriptor once.
    let sock = unsafe { Socket::from_raw_fd(fd) };
    sock.set_nonblocking(true).map_err(|e| refuse(format!("O_NONBLOCK: {e}")))?;
    sock.set_cloexec(true).map_err(|e| refuse(format!("FD_CLOEXEC: {e}")))?;
    Ok(sock)
}

/// How a shared listener shows in log lines: `unix:/run/hitcore.sock` or `http://[::1]:8000`.
pub fn describe(sock: &Socket) -> String {
    match sock.local_addr() {
        Ok(addr) => match (addr.as_socket(), addr.as_pathname()) {
            (Some(ip), _) => format!("http://{ip}"),
            (None, Some(path)) => format!("unix:{}", path.display()),
            (None, None) => format!("fd://{}", sock.as_raw_fd()),
        },
        Err(_) => format!("fd://{}", sock.as_raw_fd()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::fd::IntoRawFd;

    fn scratch(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("hitcore-shared-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_unix_socket_with_its_mode_replacing_only_a_stale_one() {
        let dir = scratch("unix");
        let path = dir.join("h.sock");
        let sock = open_unix(&path, Some(0o600), Some(16)).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(describe(&sock), format!("unix:{}", path.display()));
        let mut client = std::os::unix::net::UnixStream::connect(&path).unwrap();
        client.write_all(b"x").unwrap();
        let (mut conn, _) = loop {
            match sock.accept() {
                Ok(c) => break c,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        };
        let mut byte = [0u8; 1];
        conn.set_nonblocking(false).unwrap();
        conn.read_exact(&mut byte).unwrap();
        assert_eq!(&byte, b"x");

        // Live: refused. Stale (its server gone): replaced.
        assert!(matches!(open_unix(&path, None, Some(16)), Err(SharedError::InUse(_))));
        drop(sock);
        let again = open_unix(&path, None, Some(16)).unwrap();
        drop(again);
        remove_unix(&path);
        assert!(!path.exists());

        // Not a socket: refused and left alone.
        let file = dir.join("plain");
        std::fs::write(&file, "keep").unwrap();
        assert!(matches!(open_unix(&file, None, Some(16)), Err(SharedError::NotASocket(_))));
        remove_unix(&file);
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn shared_listeners_for_every_bind_but_a_first_tcp_one() {
        let dir = scratch("binds");
        let options = ListenOptions { backlog: 16, defer_accept_secs: 1 };
        let unix = Bind::Unix(dir.join("a.sock"));
        let tcp = Bind::Tcp("127.0.0.1:0".parse().unwrap());
        let shared = Shared::open(&[tcp.clone(), unix.clone()], Some(0o660), options).unwrap();
        assert!(shared.main.is_none() && shared.extras.len() == 1);
        assert!(shared.main_copy().is_none());
        shared.remove_paths();
        assert!(!dir.join("a.sock").exists());

        let shared = Shared::open(&[unix.clone(), tcp], None, options).unwrap();
        assert!(shared.main.is_some() && shared.extras.len() == 1);
        let copy = shared.main_copy().unwrap().unwrap();
        assert_eq!(describe(&copy), format!("unix:{}", dir.join("a.sock").display()));
        drop(copy);

        // A failure part-way leaves no socket file behind.
        let busy = Bind::Unix(dir.join("b.sock"));
        let holder = Shared::open(std::slice::from_ref(&busy), None, options).unwrap();
        let err = Shared::open(&[Bind::Unix(dir.join("c.sock")), busy], None, options).unwrap_err();
        assert!(matches!(err, SharedError::InUse(_)), "{err}");
        assert!(!dir.join("c.sock").exists());
        holder.remove_paths();
        shared.remove_paths();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn only_listening_stream_sockets_are_adopted() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let sock = adopt(listener.into_raw_fd()).unwrap();
        assert_eq!(describe(&sock), format!("http://{addr}"));

        let unbound = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        let err = adopt(unbound.into_raw_fd()).unwrap_err().to_string();
        assert!(err.contains("not listening"), "{err}");
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        assert!(adopt(udp.into_raw_fd()).unwrap_err().to_string().contains("not a stream socket"));
        let file = std::fs::File::open("/proc/self/status").unwrap();
        assert!(adopt(file.into_raw_fd()).is_err());
    }
}
