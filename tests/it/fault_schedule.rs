//! The fault schedule (issue 18): a seeded random sequence of HUP, TTIN, TTOU, USR2 (onto the good
//! binary, onto shards that crash, onto shards that boot slowly with a HUP sent meanwhile, onto a
//! binary that cannot start), SIGKILL and SIGSTOP of shards and SIGKILL of a new supervisor
//! mid-upgrade, against the real binary and a real Redis, while a prober opens a new connection
//! every 20 ms. The invariants (tests/it/fault/mod.rs): every probe answered 200 with a value never
//! seen before, but for one request per killed or stopped shard; the pid file always names a live
//! supervisor; at the end exactly one supervisor, named by the pid file, serving the shard count
//! the schedule asked for.
//!
//! CI runs a few fixed seeds, bounded in time. A longer run, or a failing seed again:
//! `scripts/fault-schedule --seconds N --seed S` (runs `fault_schedule_from_env`, ignored here).

use crate::common;
use crate::fault;
use crate::install;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use fault::{Action, Fault, FaultKind, Probe, Schedule, Seen};
use install::{BROKEN, Install};

/// `--timeout` of the server under test: a stopped shard is replaced within about twice this.
const TIMEOUT_SECS: u64 = 4;
/// Shards at start (`-w`), which is also what a new supervisor starts with after a USR2.
const WORKERS: usize = 2;
/// The most shards TTIN may ask for.
const MAX_SHARDS: usize = 4;

/// Everything the run saw, for the report.
struct Report {
    seed: u64,
    seconds: u64,
    actions: BTreeMap<String, usize>,
    outcomes: BTreeMap<String, usize>,
    verdict: fault::Verdict,
    probes: Vec<Probe>,
    faults: Vec<Fault>,
    end: Result<(), String>,
}

impl Report {
    fn text(&self) -> String {
        let mut out = format!("fault schedule: seed {} for {} s\n", self.seed, self.seconds);
        let total: usize = self.actions.values().sum();
        out += &format!("actions: {total}\n");
        for (k, n) in &self.actions {
            out += &format!("  {k}: {n}\n");
        }
        out += "USR2 outcomes:\n";
        for (k, n) in &self.outcomes {
            out += &format!("  {k}: {n}\n");
        }
        let failed = self.probes.iter().filter(|p| !matches!(p.seen, Seen::Ok(_))).count();
        out += &format!(
            "probes: {} (200: {}, not 200: {failed}; faults that may cost one: {})\n",
            self.verdict.probes,
            self.verdict.ok,
            self.faults.len()
        );
        for (p, f) in &self.verdict.excused {
            let (probe, fault) = (&self.probes[*p], &self.faults[*f]);
            out += &format!(
                "  excused: probe at {} ms ({:?}) lost to the {:?} at {} ms\n",
                probe.start_ms, probe.seen, fault.kind, fault.at_ms
            );
        }
        for v in &self.verdict.violations {
            out += &format!("  VIOLATION: {v}\n");
        }
        match &self.end {
            Ok(()) => out += "end: one supervisor, named by the pid file, serving the asked shard count\n",
            Err(e) => out += &format!("end: VIOLATION: {e}\n"),
        }
        out += &format!("replay: scripts/fault-schedule --seconds {} --seed {}\n", self.seconds, self.seed);
        out
    }

    fn passed(&self) -> bool {
        self.verdict.violations.is_empty() && self.end.is_ok()
    }
}

/// `(ppid, pgrp)` of a live, non-zombie process.
fn stat(pid: i32) -> Option<(i32, i32)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest: Vec<&str> = text.rsplit_once(')')?.1.split_whitespace().collect();
    if rest.first() == Some(&"Z") {
        return None;
    }
    Some((rest.get(1)?.parse().ok()?, rest.get(2)?.parse().ok()?))
}

fn comm(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default().trim().to_string()
}

fn pids() -> Vec<i32> {
    std::fs::read_dir("/proc")
        .map(|d| d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect())
        .unwrap_or_default()
}

fn children(of: i32) -> Vec<i32> {
    pids().into_iter().filter(|&p| stat(p).is_some_and(|(ppid, _)| ppid == of)).collect()
}

fn shards_of(sup: i32) -> Vec<i32> {
    children(sup).into_iter().filter(|&p| comm(p).starts_with("hitcore-shard")).collect()
}

fn masters_in(group: i32) -> Vec<i32> {
    pids().into_iter().filter(|&p| stat(p).is_some_and(|(_, g)| g == group) && comm(p) == "hitcore-master").collect()
}

fn read_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn kill(pid: i32, sig: i32) {
    // SAFETY: every pid signalled here belongs to the server this test started (its process group).
    unsafe { libc::kill(pid, sig) };
}

/// Kills what is left of the server's process group (supervisors started by USR2 are not our
/// children, so no other guard reaches them).
struct Group(i32);

impl Drop for Group {
    fn drop(&mut self) {
        // SAFETY: the process group the test's server was started in.
        unsafe { libc::killpg(self.0, libc::SIGKILL) };
    }
}

/// The binary on disk, as a package upgrade changes it: the good one (a hard link to a copy of the
/// test's binary), or a script that cannot start; and the test hook's boot file for shards that
/// crash or boot slowly (src/testhook.rs).
struct Disk {
    install: Install,
    real: PathBuf,
    boot: PathBuf,
}

impl Disk {
    fn new() -> Disk {
        let install = Install::new();
        let real = install.dir.join("hitcore.real");
        std::fs::hard_link(&install.exe, &real).unwrap();
        let boot = install.dir.join("boot");
        std::fs::write(&boot, "").unwrap();
        Disk { install, real, boot }
    }

    fn good(&self) {
        let tmp = self.install.dir.join(".hitcore.link");
        let _ = std::fs::remove_file(&tmp);
        std::fs::hard_link(&self.real, &tmp).unwrap();
        std::fs::rename(&tmp, &self.install.exe).unwrap();
        std::fs::write(&self.boot, "").unwrap();
    }

    fn boot(&self, how: &str) {
        std::fs::write(&self.boot, how).unwrap();
    }
}

/// Opens a new connection every 20 ms (a request, `Connection: close`), recording what it saw.
fn prober(addr: std::net::SocketAddr, t0: Instant, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Vec<Probe>> {
    std::thread::spawn(move || {
        let mut probes = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let start = Instant::now();
            let seen = match one_request(addr) {
                Outcome::Answered { status: 200, value } => Seen::Ok(value.unwrap_or(-1)),
                Outcome::Answered { status, .. } => Seen::Status(status),
                Outcome::Refused => Seen::Refused,
                Outcome::Failed(why) => Seen::Failed(why),
            };
            let end = Instant::now();
            let ms = |t: Instant| t.duration_since(t0).as_millis() as u64;
            probes.push(Probe { start_ms: ms(start), end_ms: ms(end), seen });
            std::thread::sleep(Duration::from_millis(20).saturating_sub(end - start));
        }
        probes
    })
}

/// The USR2 outcomes the supervisors' logs tell apart, in the order they are looked for.
const USR2_LINES: [(&str, &str); 4] = [
    ("Took over from the old supervisor", "took over"),
    ("USR2 failed", "failed, old carries on"),
    ("USR2 ignored", "refused (busy)"),
    ("USR2 queued", "queued"),
];

fn run(seed: u64, seconds: u64) -> Report {
    eprintln!(
        "fault schedule: seed {seed}, {seconds} s (replay: scripts/fault-schedule --seconds {seconds} --seed {seed})"
    );
    let redis = TestRedis::start();
    let disk = Disk::new();
    let pidfile = disk.install.dir.join("hitcore.pid");
    let url = redis.url(0);
    let (timeout, workers) = (TIMEOUT_SECS.to_string(), WORKERS.to_string());
    let args = [
        "-w",
        &workers,
        "--share-cpus",
        "--redis",
        &url,
        "--pid",
        pidfile.to_str().unwrap(),
        "--timeout",
        &timeout,
        "--graceful-timeout",
        "5",
        "--upgrade-timeout",
        "10",
    ];
    let server = TestServer::start_exe(&disk.install.exe, &args, |cmd| {
        cmd.env(hitcore::testhook::BOOT_FILE_ENV, &disk.boot);
    });
    let group = Group(server.pid());
    server.log.wait_for("Ready: 2 shards serving", DEADLINE);
    let t0 = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let probes = prober(server.addr, t0, stop.clone());
    let faults = Arc::new(Mutex::new(Vec::<Fault>::new()));
    let fault = |kind| faults.lock().unwrap().push(Fault { at_ms: t0.elapsed().as_millis() as u64, kind });
    let mut schedule = Schedule::new(seed, WORKERS, MAX_SHARDS);
    let mut actions = BTreeMap::new();
    let mut outcomes = BTreeMap::new();
    let mut broken_pidfile = None;
    let supervisor = || read_pid(&pidfile).filter(|&p| comm(p) == "hitcore-master");

    while t0.elapsed() < Duration::from_secs(seconds) {
        let Some(sup) = supervisor() else {
            broken_pidfile = Some(format!("at {} ms the pid file names no live supervisor", t0.elapsed().as_millis()));
            break;
        };
        let (action, pause) = schedule.next();
        *actions.entry(format!("{action:?}")).or_insert(0) += 1;
        let mark = server.log.len();
        let usr2_counts = || USR2_LINES.map(|(needle, _)| server.log.count_since(mark, needle));
        let before = usr2_counts();
        let usr2 = |then: &dyn Fn()| {
            kill(sup, libc::SIGUSR2);
            then();
            // The outcome: a take-over (and the old supervisor gone), a failure, or a refusal.
            let deadline = Instant::now() + Duration::from_secs(40);
            loop {
                let now = usr2_counts();
                if let Some(i) = (0..USR2_LINES.len()).find(|&i| now[i] > before[i]) {
                    if i == 0 {
                        while alive(sup) && Instant::now() < deadline {
                            std::thread::sleep(Duration::from_millis(20));
                        }
                    }
                    return i;
                }
                if Instant::now() > deadline {
                    return usize::MAX;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        };
        let outcome = match action {
            Action::Hup => {
                kill(sup, libc::SIGHUP);
                None
            }
            Action::Ttin => {
                kill(sup, libc::SIGTTIN);
                None
            }
            Action::Ttou => {
                kill(sup, libc::SIGTTOU);
                None
            }
            Action::KillShard | Action::StopShard => {
                let shards = shards_of(sup);
                if !shards.is_empty() {
                    let victim = shards[schedule.pick(shards.len())];
                    if action == Action::KillShard {
                        kill(victim, libc::SIGKILL);
                        fault(FaultKind::Kill);
                    } else {
                        kill(victim, libc::SIGSTOP);
                        fault(FaultKind::Stop);
                    }
                }
                None
            }
            Action::Usr2Good => Some(usr2(&|| {})),
            Action::Usr2Crash => {
                disk.boot("kill");
                let o = usr2(&|| {});
                disk.good();
                Some(o)
            }
            Action::Usr2SlowWithHup => {
                disk.boot("sleep 2.5");
                let o = usr2(&|| {
                    std::thread::sleep(Duration::from_millis(500));
                    kill(sup, libc::SIGHUP);
                });
                disk.good();
                Some(o)
            }
            Action::Usr2Broken => {
                disk.install.replace(BROKEN);
                let o = usr2(&|| {});
                disk.good();
                Some(o)
            }
            Action::Usr2KillNew => {
                disk.boot("sleep 2.5");
                let o = usr2(&|| {
                    let deadline = Instant::now() + Duration::from_secs(5);
                    while Instant::now() < deadline {
                        if let Some(&new) = children(sup).iter().find(|&&p| comm(p) == "hitcore-master") {
                            std::thread::sleep(Duration::from_millis(300));
                            kill(new, libc::SIGKILL);
                            fault(FaultKind::KillSupervisor);
                            return;
                        }
                        std::thread::sleep(Duration::from_millis(10));
                    }
                });
                disk.good();
                Some(o)
            }
        };
        if let Some(i) = outcome {
            let name = USR2_LINES.get(i).map_or("no outcome within 40 s", |(_, name)| name);
            *outcomes.entry(format!("{action:?}: {name}")).or_insert(0) += 1;
            // A new supervisor starts with -w shards, whatever its predecessor was asked for.
            if i == 0 {
                schedule.asked = WORKERS;
            }
        }
        std::thread::sleep(pause);
    }
    disk.good();
    // The last probes see the end state too.
    let end = match broken_pidfile {
        Some(e) => Err(e),
        None => settle(&pidfile, group.0, schedule.asked),
    };
    stop.store(true, Ordering::Relaxed);
    let probes = probes.join().unwrap();
    let faults = faults.lock().unwrap().clone();
    let mut verdict = fault::check(&probes, &faults, TIMEOUT_SECS * 1000);
    // A listener shut down under a shard that still accepts on it (what issue 18 found) shows as
    // EINVAL from accept; it may cost no probe (the kernel sends new connections elsewhere), so it
    // is looked for in the log.
    for line in server.log.lines().iter().filter(|l| l.contains("accept failed: Invalid argument")) {
        verdict.violations.push(format!("a listener was shut down under a live shard: {line}"));
    }
    drop(server);
    drop(group);
    Report { seed, seconds, actions, outcomes, verdict, probes, faults, end }
}

/// Waits for the end state: exactly one supervisor in the group, the pid file naming it, with the
/// asked number of shards, all answering.
fn settle(pidfile: &Path, group: i32, asked: usize) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = String::new();
    while Instant::now() < deadline {
        let masters = masters_in(group);
        let named = read_pid(pidfile);
        match (masters.as_slice(), named) {
            ([one], Some(p)) if *one == p => {
                let shards = shards_of(p);
                if shards.len() == asked {
                    return Ok(());
                }
                last = format!("supervisor {p} has {} shards, {asked} asked", shards.len());
            }
            _ => last = format!("supervisors {masters:?}, pid file {named:?}"),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(last)
}

fn run_and_assert(seed: u64, seconds: u64) {
    let report = run(seed, seconds);
    let text = report.text();
    eprintln!("{text}");
    if let Ok(path) = std::env::var("FAULT_REPORT") {
        std::fs::write(&path, &text).unwrap();
    }
    assert!(report.passed(), "{text}");
}

#[test]
fn a_bounded_fault_schedule_keeps_serving() {
    for seed in [1, 2] {
        run_and_assert(seed, 20);
    }
}

/// `scripts/fault-schedule --seconds N --seed S`: `FAULT_SEED` and `FAULT_SECONDS`.
#[test]
#[ignore]
fn fault_schedule_from_env() {
    let seed = std::env::var("FAULT_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(1);
    let seconds = std::env::var("FAULT_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(60);
    run_and_assert(seed, seconds);
}
