//! Applying changed binds on HUP: the shared listeners (every bind after the first) opened, kept or
//! closed to match the configuration just loaded.
//!
//! A kept address keeps its very socket, so no connection queued on it is lost; an added one is
//! opened here, in the supervisor, and reaches shards as they are spawned (the HUP replacements,
//! TTIN, a crash restart) in their hand-off's `extra_fds`; a removed one is closed here, its unix
//! socket file removed at once (no new client finds it), and stops being served once the old
//! shards that still hold it have retired. If any added address cannot be opened, nothing changes:
//! one ERROR names it and the old binds stay. The first bind (every shard's main listener) is never
//! touched here: `Config::for_reload` keeps it. It must not spawn, signal or reap shards.

use socket2::Socket;
use tracing::{error, info};

use super::arbiter::Arbiter;
use crate::bind::Bind;
use crate::config::Config;
use crate::listener::shared::{self, SharedError};
use crate::listener::{self, ListenOptions};

/// What [`plan`] decided for one bind after the first.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// The old listener at this index of the old extras serves it still.
    Keep(usize),
    /// A new listener is opened for it.
    Open,
}

/// Matches the new binds after the first against the old ones: for each new one, the old listener
/// that serves it (by [`Bind::same_request`]) or none. The old ones nobody kept are closed.
fn plan(old: &[Bind], new: &[Bind]) -> Vec<Step> {
    let mut taken = vec![false; old.len()];
    new.iter()
        .map(|n| match (0..old.len()).find(|&i| !taken[i] && n.same_request(&old[i])) {
            Some(i) => {
                taken[i] = true;
                Step::Keep(i)
            }
            None => Step::Open,
        })
        .collect()
}

/// Opens one added bind. Descriptors are only adopted at start: on a HUP, `fd://N` would name
/// whatever the supervisor has open as N by now (one of its own listeners, the heartbeat region).
fn open(bind: &Bind, mode: Option<u32>, options: ListenOptions) -> Result<Socket, SharedError> {
    match bind {
        Bind::Tcp(addr) => Ok(listener::probe(*addr).and_then(|()| listener::open(*addr, options))?),
        Bind::Unix(path) => shared::open_unix(path, mode, options.backlog),
        Bind::Fd(fd) | Bind::Activated { fd, .. } => Err(SharedError::NotAListener {
            fd: *fd,
            reason: "an inherited descriptor can only be added at start, not on HUP".into(),
        }),
    }
}

impl Arbiter {
    /// Makes the shared listeners match `new`'s binds after the first (`new` is the configuration
    /// `Config::for_reload` returned). When an added one cannot be opened, logs one ERROR naming it
    /// and puts the current binds and `--bind-mode` back into `new`, so the rest of the reload goes
    /// on with the listeners as they were.
    pub(super) fn rebind(&mut self, new: &mut Config) {
        let old_binds: Vec<Bind> = self.config.binds.iter().skip(1).cloned().collect();
        let new_binds: Vec<Bind> = new.binds.iter().skip(1).cloned().collect();
        let mode_changed = new.bind_mode != self.config.bind_mode;
        if old_binds == new_binds && !mode_changed {
            return;
        }
        let steps = plan(&old_binds, &new_binds);
        let options = ListenOptions::of(new);
        let pid = std::process::id();
        // Open every added one first: a failure leaves everything as it was.
        let mut opened: Vec<Option<Socket>> = Vec::with_capacity(steps.len());
        for (bind, step) in new_binds.iter().zip(&steps) {
            if *step != Step::Open {
                opened.push(None);
                continue;
            }
            match open(bind, new.bind_mode, options) {
                Ok(sock) => opened.push(Some(sock)),
                Err(e) => {
                    for (bind, sock) in new_binds.iter().zip(opened) {
                        if let (Bind::Unix(path), Some(sock)) = (bind, sock) {
                            drop(sock);
                            shared::remove_unix(path);
                        }
                    }
                    error!(
                        "Reload: {e}; the binds stay as they were ({}), the rest of the configuration is \
                         applied",
                        self.config.binds.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
                    );
                    new.binds = self.config.binds.clone();
                    new.bind_mode = self.config.bind_mode;
                    return;
                }
            }
        }
        let mut old_socks: Vec<Option<Socket>> =
            std::mem::take(&mut self.shared.extras).into_iter().map(Some).collect();
        let mut extras = Vec::with_capacity(steps.len());
        for ((bind, step), sock) in new_binds.iter().zip(&steps).zip(opened) {
            let sock = match (step, sock) {
                (Step::Keep(i), _) => old_socks.get_mut(*i).and_then(Option::take),
                (Step::Open, sock) => {
                    if let Bind::Unix(path) = bind {
                        self.shared.paths.push(path.clone());
                    }
                    sock.inspect(|s| info!("Listening at: {} ({pid})", super::startup::announce(new, s)))
                }
            };
            if let (Step::Keep(_), Bind::Unix(path), Some(mode)) = (step, bind, new.bind_mode) {
                if mode_changed {
                    use std::os::unix::fs::PermissionsExt;
                    if let Err(e) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)) {
                        error!("Reload: cannot apply --bind-mode {mode:o} to unix:{}: {e}", path.display());
                    }
                }
            }
            extras.extend(sock);
        }
        // What nobody kept: closed here; the old shards still accept on their copies until they retire.
        for (bind, sock) in old_binds.iter().zip(old_socks) {
            let Some(sock) = sock else { continue };
            info!("Stopped listening at: {} ({pid}); the old shards let it go as they retire", shared::describe(&sock));
            if let Bind::Unix(path) = bind {
                if self.shared.paths.contains(path) {
                    shared::remove_unix(path);
                    self.shared.paths.retain(|p| p != path);
                }
            }
            drop(sock);
        }
        self.shared.extras = extras;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binds(list: &[&str]) -> Vec<Bind> {
        list.iter().map(|b| Bind::parse(b).unwrap()).collect()
    }

    #[test]
    fn kept_binds_keep_their_listener_and_the_rest_are_opened() {
        let old = binds(&["unix:/a.sock", "127.0.0.2:0", "127.0.0.3:9000"]);
        let new = binds(&["127.0.0.3:9000", "unix:/b.sock", "127.0.0.2:0"]);
        assert_eq!(plan(&old, &new), vec![Step::Keep(2), Step::Open, Step::Keep(1)]);
        assert_eq!(plan(&old, &[]), vec![]);
        assert_eq!(plan(&[], &binds(&["unix:/a.sock"])), vec![Step::Open]);
        // Port 0 asked again is the port it was bound to; another port is another address.
        let bound = vec![Bind::Tcp("127.0.0.2:4321".parse().unwrap())];
        assert_eq!(plan(&bound, &binds(&["127.0.0.2:0"])), vec![Step::Keep(0)]);
        assert_eq!(plan(&bound, &binds(&["127.0.0.2:4322"])), vec![Step::Open]);
    }

    #[test]
    fn a_descriptor_is_never_adopted_on_hup() {
        let options = ListenOptions { backlog: 16, defer_accept_secs: 1 };
        let e = open(&Bind::Fd(3), None, options).unwrap_err().to_string();
        assert!(e.contains("fd://3") && e.contains("only be added at start"), "{e}");
    }
}
