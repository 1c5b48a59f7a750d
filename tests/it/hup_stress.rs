//! Evidence gathering, not run by default (`cargo test --test hup_stress -- --ignored --nocapture`):
//! many HUPs in a row on one server under a heavier load than the HUP test's, counting every failed
//! request, to measure how often a retiring shard's listener loses a connection (docs/supervisor.md,
//! "The rare reset on HUP"). `HITCORE_STRESS_HUPS` and `HITCORE_STRESS_THREADS` size it.

use crate::common;

use common::*;

#[test]
#[ignore]
fn many_hups_under_load() {
    let hups: usize = std::env::var("HITCORE_STRESS_HUPS").ok().and_then(|v| v.parse().ok()).unwrap_or(30);
    let threads: usize = std::env::var("HITCORE_STRESS_THREADS").ok().and_then(|v| v.parse().ok()).unwrap_or(16);
    let redis = TestRedis::start();
    let url = redis.url(0);
    let server = TestServer::start(&["-w", "2", "--share-cpus", "--redis", &url]);
    server.wait_ready(2);
    let load = Load::start(server.addr, threads);
    let counter = || redis.cmd(0, &["GET", "hit"]).parse::<usize>().unwrap_or(0);
    for i in 1..=hups {
        let before = counter();
        server.signal(libc::SIGHUP);
        server.log.wait_for_count("Reload complete", i, DEADLINE);
        wait_until("the load gets answers", DEADLINE, || counter() >= before + 100);
    }
    let outcomes = load.finish();
    let t = tally(&outcomes);
    let migrate = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_migrate_req").unwrap_or_default();
    eprintln!("{hups} HUPs, {threads} threads, tcp_migrate_req={}: {}", migrate.trim(), t.summary());
    for f in &t.failed {
        eprintln!("failed: {f}");
    }
    assert_unique(&t.values);
}
