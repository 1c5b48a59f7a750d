//! systemd's notify protocol, against a real AF_UNIX datagram socket bound by the test as
//! NOTIFY_SOCKET: READY=1 once every shard serves, RELOADING=1 with MONOTONIC_USEC and READY=1 again
//! around a HUP, STATUS= with the shards up and the requests served, WATCHDOG=1 at half
//! WATCHDOG_USEC, STOPPING=1 on TERM; shards never notify.

use crate::common;
use crate::notify_socket;

use common::*;
use notify_socket::NotifySocket;

fn monotonic_usec() -> u128 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid timespec pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u128 * 1_000_000 + ts.tv_nsec as u128 / 1000
}

#[test]
fn systemd_hears_ready_reloading_status_watchdog_and_stopping_in_order() {
    let redis = TestRedis::start();
    let notify = NotifySocket::bind();
    let url = redis.url(0);
    let mut server = TestServer::start_with(&["-w", "2", "--share-cpus", "--redis", &url], |cmd| {
        cmd.env("NOTIFY_SOCKET", &notify.path).env("WATCHDOG_USEC", "200000").env_remove("WATCHDOG_PID");
    });
    server.wait_ready(2);
    let ready = notify.wait_for("READY=1", |m| m.contains("READY=1"));
    assert!(ready.contains("STATUS=2 shards serving, 0 requests served"), "{ready:?}");
    assert_eq!(server.log.count("Ready: 2 shards serving"), 1);

    for i in 1..=3 {
        assert_eq!(get_once(server.addr, GET).value(), i);
    }
    notify.wait_for("a STATUS with the requests served", |m| m.contains("STATUS=2 shards serving, 3 requests served"));

    let before_hup = monotonic_usec();
    server.signal(libc::SIGHUP);
    server.log.wait_for("Reload complete", DEADLINE);
    notify.wait_for("READY=1 after the reload", |m| m.starts_with("READY=1") && m.contains("requests served"));
    let reloading = notify.wait_for("RELOADING=1", |m| m.starts_with("RELOADING=1"));
    let usec: u128 = reloading
        .lines()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .expect("MONOTONIC_USEC with RELOADING=1")
        .parse()
        .unwrap();
    assert!(usec >= before_hup && usec <= monotonic_usec(), "MONOTONIC_USEC {usec} is the moment of the HUP");

    // WATCHDOG_USEC 200 ms: pets every 100 ms; a loaded machine may stretch that, so count loosely.
    let pets = || notify.all().iter().filter(|m| *m == "WATCHDOG=1\n").count();
    let now = pets();
    wait_until("the watchdog is petted", DEADLINE, || pets() >= now + 3);

    server.signal(libc::SIGTERM);
    assert!(server.wait_exit(DEADLINE).success());
    let states = notify.states();
    let kinds: Vec<&str> = states.iter().map(|m| m.lines().next().unwrap()).collect();
    assert_eq!(kinds, ["READY=1", "RELOADING=1", "READY=1", "STOPPING=1"], "{states:?}");
    // Only the supervisor speaks: four shards ran, none inherited NOTIFY_SOCKET.
    assert!(server.log.count("Booting worker") >= 4);
}
