//! Where shards run: by default on every allowed CPU, placed by the kernel (so a busy neighbour on
//! one CPU does not hold a shard's connections); with `--pin`, each on its own CPU. Read from the
//! shards' real affinity masks in /proc, not from the log.

use crate::common;

use std::collections::BTreeSet;

use common::*;

/// A process's affinity mask, from /proc/PID/status (`Cpus_allowed_list: 0-3,6`).
fn affinity(pid: i32) -> BTreeSet<usize> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/PID/status");
    let list = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .expect("Cpus_allowed_list in /proc/PID/status")
        .trim();
    let mut cpus = BTreeSet::new();
    for part in list.split(',') {
        match part.split_once('-') {
            Some((a, b)) => cpus.extend(a.parse::<usize>().unwrap()..=b.parse::<usize>().unwrap()),
            None => {
                cpus.insert(part.parse::<usize>().unwrap());
            }
        }
    }
    cpus
}

/// The supervisor inherits this test's mask, so the shards' CPUs come from it.
fn own_cpus() -> BTreeSet<usize> {
    affinity(std::process::id() as i32)
}

fn list(cpus: &BTreeSet<usize>) -> String {
    cpus.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(",")
}

#[test]
fn by_default_every_shard_may_run_on_every_allowed_cpu() {
    let redis = TestRedis::start();
    let url = redis.url(0);
    let mine = own_cpus();
    let mut server = TestServer::start(&["-w", "2", "--share-cpus", "--redis", &url]);
    server.wait_ready(2);
    server.log.wait_for("placed by the kernel", DEADLINE);
    let shards = server.shard_pids();
    assert_eq!(shards.len(), 2, "{shards:?}");
    for pid in &shards {
        assert_eq!(affinity(*pid), mine, "shard {pid}'s mask, against the supervisor's");
    }
    // It still serves and counts.
    assert_eq!(get_once(server.addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n").value(), 1);
    server.stop();
}

#[test]
fn with_cpus_the_shards_keep_to_those_cpus() {
    let redis = TestRedis::start();
    let url = redis.url(0);
    let first = *own_cpus().iter().next().unwrap();
    let cpus = first.to_string();
    let mut server = TestServer::start(&["-w", "2", "--share-cpus", "--cpus", &cpus, "--redis", &url]);
    server.wait_ready(2);
    for pid in server.shard_pids() {
        assert_eq!(affinity(pid), BTreeSet::from([first]), "shard {pid} with --cpus {cpus}");
    }
    server.stop();
}

#[test]
fn with_pin_each_shard_runs_on_its_own_cpu() {
    let redis = TestRedis::start();
    let url = redis.url(0);
    let mine = own_cpus();
    // Two shards on two CPUs where the machine has them; on one CPU both are pinned to it.
    let n = mine.len().min(2);
    let workers = n.to_string();
    let mut server = TestServer::start(&["-w", &workers, "--pin", "--redis", &url]);
    server.wait_ready(n);
    server.log.wait_for("each pinned to its CPU", DEADLINE);
    let expected: Vec<usize> = mine.iter().copied().take(n).collect();
    // "Booting worker with pid: P (shard I, cpu C)": the pid, its shard, the CPU it was given.
    let booted: Vec<(i32, usize, usize)> = server
        .log
        .lines()
        .iter()
        .filter_map(|l| l.split("Booting worker with pid: ").nth(1))
        .map(|rest| {
            let nums: Vec<usize> = rest.split(|c: char| !c.is_ascii_digit()).filter_map(|w| w.parse().ok()).collect();
            (nums[0] as i32, nums[1], nums[2])
        })
        .collect();
    assert_eq!(booted.len(), n, "{booted:?}");
    for (pid, shard, cpu) in booted {
        assert_eq!(cpu, expected[shard], "shard {shard} is given the {shard}-th of {}", list(&mine));
        assert_eq!(affinity(pid), BTreeSet::from([cpu]), "shard {shard} (pid {pid}) pinned to CPU {cpu}");
    }
    server.stop();
}
