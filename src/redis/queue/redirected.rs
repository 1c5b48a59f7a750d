//! The requests of batches a Cluster node redirected (`-MOVED`, `-ASK`): they ran nowhere, so
//! they may be sent once more, where the node said. After `-MOVED` they wait here until the next
//! connection writes them first; after `-ASK` they are out on a connection of their own, under an
//! [`AskId`], until what became of that batch comes back.
//!
//! It owns those lists only; the queue moves requests in and out and completes their tickets.

use std::collections::VecDeque;

use super::ticket::Ticket;

/// A batch out on an `-ASK` connection, to settle when its answer comes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AskId(u64);

/// Redirected requests, by where they stand.
#[derive(Debug, Default)]
pub(super) struct Redirected {
    /// Redirected and not yet taken: (ticket, number of requests), in registration order.
    pub(super) list: VecDeque<(Ticket, u64)>,
    /// Taken for an `-ASK` send: each batch's requests, until settled. They outlive the session
    /// that was redirected, so a broken connection does not fail them.
    asking: Vec<(AskId, Vec<(Ticket, u64)>)>,
    /// The next batch's id.
    next: u64,
}

impl Redirected {
    /// Takes everything redirected as one batch for `-ASK`: its id and how many requests.
    pub(super) fn take(&mut self) -> Option<(AskId, u64)> {
        if self.list.is_empty() {
            return None;
        }
        let id = AskId(self.next);
        self.next += 1;
        let batch: Vec<(Ticket, u64)> = self.list.drain(..).collect();
        let total = batch.iter().map(|(_, n)| n).sum();
        self.asking.push((id, batch));
        Some((id, total))
    }

    /// The requests of the `-ASK` batch `id`, taken (`None` if already settled).
    pub(super) fn finish(&mut self, id: AskId) -> Option<Vec<(Ticket, u64)>> {
        let at = self.asking.iter().position(|(i, _)| *i == id)?;
        Some(self.asking.swap_remove(at).1)
    }

    /// Requests out on `-ASK` connections.
    pub(super) fn asking(&self) -> u64 {
        self.asking.iter().flat_map(|(_, batch)| batch.iter().map(|(_, n)| n)).sum()
    }
}
