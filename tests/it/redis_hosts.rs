//! Several hitcore hosts on one Redis primary: three servers bound to 127.0.0.1, 127.0.0.2 and
//! 127.0.0.3, each with its own coalescing connection, under concurrent load. INCRBY is atomic in
//! Redis, so every range a batch is handed is its own: no value is handed out twice across hosts,
//! and the counter equals the number of 200s.

use crate::common;

use common::*;

#[test]
fn three_hosts_on_one_primary_hand_out_unique_values_and_the_counter_equals_the_200s() {
    let redis = TestRedis::start();
    let url = redis.url(0);
    let servers: Vec<TestServer> = ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
        .iter()
        .map(|ip| TestServer::start(&["-w", "1", "-b", &format!("{ip}:0"), "--redis", &url]))
        .collect();
    for (server, ip) in servers.iter().zip(["127.0.0.1", "127.0.0.2", "127.0.0.3"]) {
        server.wait_ready(1);
        assert_eq!(server.addr.ip().to_string(), ip);
    }
    // Pipelined batches too, so the INCRBYs of different hosts interleave with k > 1.
    let pipelined: Vec<_> = servers
        .iter()
        .map(|s| {
            let addr = s.addr;
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                let mut values = Vec::new();
                for _ in 0..50 {
                    c.send(GET.repeat(8).as_bytes());
                    values.extend((0..8).map(|_| c.read_response(false).value()));
                }
                values
            })
        })
        .collect();
    let loads: Vec<Load> = servers.iter().map(|s| Load::start(s.addr, 3)).collect();
    wait_until("the counter passes 1500", DEADLINE, || {
        redis.cmd(0, &["GET", "hit"]).parse::<i64>().unwrap_or(0) >= 1500
    });
    let mut values: Vec<i64> = pipelined.into_iter().flat_map(|h| h.join().unwrap()).collect();
    let pipelined_count = values.len();
    let mut per_host = Vec::new();
    for load in loads {
        let t = tally(&load.finish());
        assert_eq!((t.non_200, t.refused, t.failed.len()), (0, 0, 0), "{}", t.summary());
        per_host.push(t.ok);
        values.extend(t.values);
    }
    println!("200s per host (one-shot load): {per_host:?}; pipelined: {pipelined_count}");
    assert!(per_host.iter().all(|&n| n > 0), "every host served: {per_host:?}");
    assert_unique(&values);
    let counter: i64 = redis.cmd(0, &["GET", "hit"]).parse().unwrap();
    assert_eq!(counter, values.len() as i64, "the counter equals the 200s");
    let mut sorted = values;
    sorted.sort_unstable();
    assert_eq!(sorted, (1..=counter).collect::<Vec<_>>(), "every value from 1 to the counter, once");
}
