//! Whether a connection's read right after an answer first tries a non-blocking `recv`, or arms
//! an io_uring readiness poll at once: a per-connection rule learned from what those tries found.
//!
//! It owns only the decision and its state; it must not touch the socket (`io` does).
//!
//! After answering, a client that sends one request at a time (ab -k, wrk, a browser) has not sent
//! its next one yet: it is waiting for the answer just written. A `recv` then fails with `EAGAIN`,
//! and the read has to arm the poll anyway (docs/performance.md, "Syscalls per request": 0.99 of
//! hitcore's 2.02 `recvfrom` per keep-alive request were such failures). A client that keeps
//! requests in flight (pipelining with a window) may well have sent more, and then the `recv`
//! finds it without a trip through io_uring. So a connection tries while its tries find data, and
//! after a miss skips the next 1, 2, 4 ... up to [`MAX_SKIP`] answers' tries before trying again:
//! a one-at-a-time client pays one failed `recv` per [`MAX_SKIP`] + 1 requests, and a connection
//! whose client starts pipelining is back to trying within [`MAX_SKIP`] answers.

/// The most answers a connection skips trying between two tries.
pub(super) const MAX_SKIP: u8 = 32;

#[derive(Debug, Default)]
pub(super) struct Speculation {
    /// Answers whose read will not try `recv` first before the next try.
    skip: u8,
    /// The skip set after the last miss (0: the last try found data, or none was made yet).
    backoff: u8,
}

impl Speculation {
    /// Whether the read after this answer tries `recv` first; `false` counts one skipped answer.
    pub(super) fn try_now(&mut self) -> bool {
        if self.skip == 0 {
            return true;
        }
        self.skip -= 1;
        false
    }

    /// What a try found: data (keep trying after every answer) or nothing (back off).
    pub(super) fn found(&mut self, data: bool) {
        if data {
            self.backoff = 0;
        } else {
            self.backoff = self.backoff.saturating_mul(2).clamp(1, MAX_SKIP);
        }
        self.skip = self.backoff;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `answers` answers against a client whose next request is there (`true`) or not.
    fn tries(spec: &mut Speculation, there: impl Fn(usize) -> bool, answers: usize) -> (usize, usize) {
        let (mut tried, mut missed) = (0, 0);
        for i in 0..answers {
            if spec.try_now() {
                tried += 1;
                let data = there(i);
                missed += usize::from(!data);
                spec.found(data);
            }
        }
        (tried, missed)
    }

    #[test]
    fn a_client_with_requests_in_flight_is_tried_after_every_answer() {
        let mut spec = Speculation::default();
        assert_eq!(tries(&mut spec, |_| true, 1000), (1000, 0));
    }

    #[test]
    fn a_one_at_a_time_client_costs_one_failed_try_per_max_skip_answers() {
        let mut spec = Speculation::default();
        // Backing off: tries at answers 0, 2, 5, 10, 19, 36, 69 (skips 1, 2, 4, 8, 16, 32), then
        // one every 33 answers.
        let (tried, missed) = tries(&mut spec, |_| false, 69 + 33 * 100);
        assert_eq!(tried, missed);
        assert_eq!(tried, 6 + 100);
    }

    #[test]
    fn a_hit_after_backing_off_returns_to_trying_every_answer() {
        let mut spec = Speculation::default();
        tries(&mut spec, |_| false, 500);
        // The client starts pipelining: within MAX_SKIP answers a try is made, finds data, and from
        // then on every answer is tried.
        let mut skipped = 0;
        while !spec.try_now() {
            skipped += 1;
        }
        assert!(skipped <= usize::from(MAX_SKIP));
        spec.found(true);
        assert_eq!(tries(&mut spec, |_| true, 100), (100, 0));
    }

    #[test]
    fn one_miss_among_hits_costs_one_skipped_try() {
        let mut spec = Speculation::default();
        let (tried, missed) = tries(&mut spec, |i| i != 10, 100);
        assert_eq!((tried, missed), (99, 1));
    }
}
