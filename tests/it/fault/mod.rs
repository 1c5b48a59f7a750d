//! The fault schedule's pure logic: a seeded generator of operator actions and faults, and the
//! checker of the invariants issue 18 lists. No process, socket or clock here (times are passed
//! in), so both are unit-tested below and a failing seed replays exactly.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::Duration;

/// A small, fixed PRNG (splitmix64): the same seed gives the same schedule on every machine and
/// toolchain, without a crate.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// One step of the schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    Hup,
    Ttin,
    Ttou,
    /// USR2 onto the good binary.
    Usr2Good,
    /// USR2 onto a release whose shards die (SIGKILL) before they boot.
    Usr2Crash,
    /// USR2 onto a release whose shards take 2.5 s to boot, with a HUP sent while it is pending.
    Usr2SlowWithHup,
    /// USR2 onto a binary that cannot start at all (a script that exits 3).
    Usr2Broken,
    /// USR2 onto slow shards, and the new supervisor SIGKILLed before it serves.
    Usr2KillNew,
    KillShard,
    StopShard,
}

impl Action {
    pub const ALL: [Action; 10] = [
        Action::Hup,
        Action::Ttin,
        Action::Ttou,
        Action::Usr2Good,
        Action::Usr2Crash,
        Action::Usr2SlowWithHup,
        Action::Usr2Broken,
        Action::Usr2KillNew,
        Action::KillShard,
        Action::StopShard,
    ];

    /// How often each is drawn (out of the sum): the quick ones more often than upgrades.
    fn weight(self) -> u64 {
        match self {
            Action::Hup => 10,
            Action::Ttin | Action::Ttou => 8,
            Action::KillShard => 12,
            Action::StopShard => 5,
            Action::Usr2Good => 4,
            Action::Usr2Crash | Action::Usr2SlowWithHup | Action::Usr2Broken | Action::Usr2KillNew => 2,
        }
    }
}

/// The schedule: an endless, seeded sequence of (action, pause after it).
#[derive(Debug, Clone)]
pub struct Schedule {
    rng: Rng,
    /// Shards asked for so far (TTIN/TTOU keep it between 1 and `max`).
    pub asked: usize,
    pub max: usize,
}

impl Schedule {
    pub fn new(seed: u64, asked: usize, max: usize) -> Schedule {
        Schedule { rng: Rng::new(seed), asked, max }
    }

    /// The next action and how long to wait after it. TTIN past `max` or TTOU at one shard is
    /// drawn again, so the shard count the schedule asks for stays known.
    pub fn next(&mut self) -> (Action, Duration) {
        let total: u64 = Action::ALL.iter().map(|a| a.weight()).sum();
        loop {
            let mut pick = self.rng.below(total);
            let action = *Action::ALL
                .iter()
                .find(|a| {
                    if pick < a.weight() {
                        true
                    } else {
                        pick -= a.weight();
                        false
                    }
                })
                .expect("the weights cover the range");
            match action {
                Action::Ttin if self.asked >= self.max => continue,
                Action::Ttou if self.asked <= 1 => continue,
                Action::Ttin => self.asked += 1,
                Action::Ttou => self.asked -= 1,
                _ => {}
            }
            let pause = Duration::from_millis(100 + self.rng.below(700));
            return (action, pause);
        }
    }

    /// Draws a value below `n` from the same stream (which shard to kill).
    pub fn pick(&mut self, n: usize) -> usize {
        self.rng.below(n as u64) as usize
    }
}

/// What one probe saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// 200 with the counter's value.
    Ok(i64),
    /// Another status.
    Status(u16),
    /// Connection refused: nothing listened.
    Refused,
    /// Connected, then no complete answer.
    Failed(String),
}

/// One probe, with its times in milliseconds since the schedule began.
#[derive(Debug, Clone)]
pub struct Probe {
    pub start_ms: u64,
    pub end_ms: u64,
    pub seen: Seen,
}

/// A fault that may cost the request a shard holds at that moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// SIGKILL of a shard: the request it holds.
    Kill,
    /// SIGSTOP of a shard: what it holds until the watchdog replaces it.
    Stop,
    /// SIGKILL of a new supervisor mid-upgrade.
    KillSupervisor,
}

impl FaultKind {
    /// How long after the fault a probe may still start and be lost to it: a stopped shard holds
    /// what it accepted until `--timeout` and the watchdog's next pass kill it.
    fn window_ms(self, timeout_ms: u64) -> u64 {
        match self {
            FaultKind::Kill | FaultKind::KillSupervisor => 500,
            FaultKind::Stop => timeout_ms * 2 + 1_000,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Fault {
    pub at_ms: u64,
    pub kind: FaultKind,
}

/// What the checker found.
#[derive(Debug, Default)]
pub struct Verdict {
    pub probes: usize,
    pub ok: usize,
    /// Failed probes each fault explains: (probe index, fault index).
    pub excused: Vec<(usize, usize)>,
    /// Everything that breaks an invariant, said in words.
    pub violations: Vec<String>,
}

/// Checks every probe: 200 with a value never seen before; a failure only for a request a
/// killed or stopped shard held (one per fault, matched to the earliest fault that explains it);
/// never a refusal, never another status (Redis stays up in the schedule).
pub fn check(probes: &[Probe], faults: &[Fault], timeout_ms: u64) -> Verdict {
    let mut v = Verdict { probes: probes.len(), ..Verdict::default() };
    let mut seen_values: BTreeMap<i64, usize> = BTreeMap::new();
    let mut used = vec![false; faults.len()];
    for (i, p) in probes.iter().enumerate() {
        match &p.seen {
            Seen::Ok(value) => {
                v.ok += 1;
                if let Some(first) = seen_values.insert(*value, i) {
                    v.violations.push(format!("value {value} answered twice (probes {first} and {i})"));
                }
            }
            Seen::Status(code) => {
                v.violations.push(format!("probe {i} at {} ms answered {code} (Redis was up)", p.start_ms))
            }
            Seen::Refused => v.violations.push(format!("probe {i} at {} ms: connection refused", p.start_ms)),
            Seen::Failed(why) => {
                let explained = faults.iter().enumerate().position(|(f, fault)| {
                    !used[f] && fault.at_ms <= p.end_ms && p.start_ms <= fault.at_ms + fault.kind.window_ms(timeout_ms)
                });
                match explained {
                    Some(f) => {
                        used[f] = true;
                        v.excused.push((i, f));
                    }
                    None => v.violations.push(format!(
                        "probe {i} ({}..{} ms) failed with no kill or stop to explain it: {why}",
                        p.start_ms, p.end_ms
                    )),
                }
            }
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_replays_the_same_schedule_and_keeps_the_count_in_bounds() {
        let run = |seed| {
            let mut s = Schedule::new(seed, 2, 4);
            (0..500).map(|_| (s.next(), s.asked)).collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
        for ((_, pause), asked) in run(7) {
            assert!((1..=4).contains(&asked));
            assert!(pause >= Duration::from_millis(100) && pause < Duration::from_millis(800));
        }
        // Every kind of action comes up in a long enough schedule.
        let kinds: std::collections::BTreeSet<Action> = run(3).into_iter().map(|((a, _), _)| a).collect();
        assert_eq!(kinds.len(), Action::ALL.len(), "{kinds:?}");
    }

    fn probe(start_ms: u64, end_ms: u64, seen: Seen) -> Probe {
        Probe { start_ms, end_ms, seen }
    }

    #[test]
    fn the_checker_excuses_one_failure_per_kill_and_nothing_else() {
        let failed = || Seen::Failed("reset".into());
        let probes = [
            probe(0, 10, Seen::Ok(1)),
            probe(30, 200, failed()),
            probe(210, 220, failed()),
            probe(300, 310, Seen::Ok(2)),
        ];
        let kill = [Fault { at_ms: 100, kind: FaultKind::Kill }];
        let v = check(&probes, &kill, 2_000);
        assert_eq!(v.excused, [(1, 0)]);
        assert_eq!(v.violations.len(), 1, "the second failure has no kill left: {:?}", v.violations);
        // A stop excuses a probe that started while the shard was stopped, until the watchdog.
        let stop = [Fault { at_ms: 100, kind: FaultKind::Stop }];
        let v = check(&probes[2..3], &stop, 2_000);
        assert!(v.violations.is_empty(), "{:?}", v.violations);
        // Refusals, 503s and a value answered twice are never excused.
        let bad = [probe(0, 1, Seen::Refused), probe(2, 3, Seen::Status(503)), probe(4, 5, Seen::Ok(1))];
        let v = check(&[probes[0].clone(), bad[0].clone(), bad[1].clone(), bad[2].clone()], &kill, 2_000);
        assert_eq!(v.violations.len(), 3, "{:?}", v.violations);
        assert!(v.violations[2].contains("answered twice"));
    }
}
