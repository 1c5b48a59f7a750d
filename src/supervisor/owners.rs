//! Who holds each listener, by socket identity ([`crate::listener::SockId`]), so that a socket
//! another process also accepts on is never shut down.
//!
//! `shutdown()` acts on the socket, not on one descriptor: done by any holder, it stops every
//! process that accepts on it. So a listener is shut down (ejected) only when this supervisor's
//! shard is its only user; a listener another supervisor's shards also hold (the old one's during a
//! USR2, inherited by the new one, or passed to a new one) is let go of by closing descriptors only.
//! It owns that set and the rule; it must not signal, spawn or shut anything down itself.

use std::collections::HashSet;

use socket2::Socket;

use crate::listener::{self, SockId};

/// The listeners this supervisor shares with another supervisor's processes.
#[derive(Debug, Default)]
pub struct Owners {
    /// Passed to a new supervisor by a USR2 of ours (until it fails, or for good once it serves).
    passed: HashSet<SockId>,
    /// Inherited from the old supervisor that started us: foreign while it (our parent, `parent`)
    /// lives; once it is gone (we are reparented) they are ours alone. Kept apart from `passed`:
    /// a supervisor started by USR2 may itself pass listeners on before its parent is gone, and
    /// the parent's exit must not make those ours again.
    inherited: HashSet<SockId>,
    parent: Option<u32>,
}

impl Owners {
    /// Owners of a supervisor started by USR2 from `parent`, sharing `inherited` with it.
    pub fn inherited_from(parent: u32, inherited: impl IntoIterator<Item = SockId>) -> Owners {
        Owners { passed: HashSet::new(), inherited: inherited.into_iter().collect(), parent: Some(parent) }
    }

    /// USR2 in the old supervisor: these listeners are passed to a new supervisor.
    pub fn pass(&mut self, ids: impl IntoIterator<Item = SockId>) {
        self.passed.extend(ids);
    }

    /// The new supervisor of our USR2 is gone (the upgrade failed), or serves and keeps only some
    /// (the caller passes those again): the listeners we passed are ours alone again.
    pub fn reclaim(&mut self) {
        self.passed.clear();
    }

    /// Whether another supervisor's processes may hold `id`.
    pub fn is_foreign(&mut self, id: Option<SockId>) -> bool {
        if let Some(parent) = self.parent {
            // SAFETY: getppid cannot fail.
            if unsafe { libc::getppid() } as u32 != parent {
                self.parent = None;
                self.inherited.clear();
            }
        }
        id.is_none_or(|id| self.passed.contains(&id) || self.inherited.contains(&id))
    }

    /// Whether `sock` may be shut down: it is not a listener every shard shares (`main_shared`),
    /// no other shard of ours holds it (`others`: every other shard's listener), and no other
    /// supervisor's process does.
    pub fn may_shut_down<'a>(
        &mut self,
        sock: &Socket,
        mut others: impl Iterator<Item = &'a Socket>,
        main_shared: bool,
    ) -> bool {
        let id = listener::identity(sock);
        !main_shared && !self.is_foreign(id) && !others.any(|o| listener::identity(o) == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::listener::{ListenOptions, open};

    #[test]
    fn a_listener_is_shut_down_only_when_nobody_else_holds_it() {
        let options = ListenOptions { backlog: 16, defer_accept_secs: 1 };
        let a = open("127.0.0.1:0".parse().unwrap(), options).unwrap();
        let b = open(listener::local_addr(&a).unwrap(), options).unwrap();
        let a_copy = a.try_clone().unwrap();
        let mut owners = Owners::default();
        assert!(owners.may_shut_down(&a, [&b].into_iter(), false));
        assert!(!owners.may_shut_down(&a, [&b, &a_copy].into_iter(), false), "a HUP replacement shares it");
        assert!(!owners.may_shut_down(&a, std::iter::empty(), true), "every shard shares the main listener");
        owners.pass([listener::identity(&a).unwrap()]);
        assert!(!owners.may_shut_down(&a_copy, std::iter::empty(), false), "passed to a new supervisor");
        assert!(owners.may_shut_down(&b, std::iter::empty(), false));
        owners.reclaim();
        assert!(owners.may_shut_down(&a, std::iter::empty(), false));
        // Inherited from a parent that is still our parent: foreign; from one that is not: ours.
        // SAFETY: getppid cannot fail.
        let parent = unsafe { libc::getppid() } as u32;
        let mut child = Owners::inherited_from(parent, listener::identity(&a));
        assert!(child.is_foreign(listener::identity(&a)));
        let mut orphan = Owners::inherited_from(parent + 1, listener::identity(&a));
        assert!(!orphan.is_foreign(listener::identity(&a)));
        // Found by the fault schedule: a supervisor started by USR2 passes a listener to its own
        // new supervisor; its parent's exit must not make that one ours again.
        let mut second = Owners::inherited_from(parent + 1, listener::identity(&b));
        second.pass(listener::identity(&a));
        assert!(second.is_foreign(listener::identity(&a)), "passed on, still foreign");
        assert!(!second.is_foreign(listener::identity(&b)), "inherited, the parent gone: ours");
    }
}
