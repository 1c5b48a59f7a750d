//! The TTL refresh's unit tests: `EXPIRE` for an unknown key, not again within the refresh
//! interval, again after it; at once for a key the hit created; again after a connection ends;
//! and a seeded randomized schedule of hits on two shards, deletes, expiries, clock steps and
//! broken connections against a model of Redis, checking that every counter keeps a TTL.

use std::time::Duration;

use super::*;

/// 6,400 s: a refresh interval of 100 s.
const TTL: u64 = 6400;

fn hit(key: &str) -> Op {
    Op::Hit { key: key.as_bytes().into(), ttl: Some(TTL), existing_only: false, publish: None }
}

fn encoded(args: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    resp::encode_command(&mut out, args);
    out
}

/// Registers one hit per key and writes them at `at`.
fn write_hits(k: &mut Keyed, keys: &[&str], at: Instant) -> (KeyedTicket, Vec<u8>, usize) {
    let t = KeyedTicket::default();
    t.arm(keys.len());
    for (i, key) in keys.iter().enumerate() {
        k.register(&t, i, hit(key), 100).unwrap();
    }
    let mut out = Vec::new();
    let n = k.encode_waiting_at(&mut out, at);
    (t, out, n)
}

#[test]
fn an_unknown_key_gets_its_expire_then_none_within_the_interval_then_one_after_it() {
    let (mut k, t0) = (Keyed::default(), Instant::now());
    let (_, out, n) = write_hits(&mut k, &["K:a:aaa"], t0);
    assert_eq!(out, [encoded(&[b"INCRBY", b"K:a:aaa", b"1"]), encoded(&[b"EXPIRE", b"K:a:aaa", b"6400"])].concat());
    assert_eq!(n, 2);
    k.complete(Reply::Integer(5)).unwrap();
    k.complete(Reply::Integer(1)).unwrap();
    let (t, out, n) = write_hits(&mut k, &["K:a:aaa", "K:a:aaa"], t0 + Duration::from_secs(99));
    assert_eq!((out, n), (encoded(&[b"INCRBY", b"K:a:aaa", b"2"]), 1));
    k.complete(Reply::Integer(7)).unwrap();
    assert_eq!([t.take(0), t.take(1)], [Answered::Int(6), Answered::Int(7)]);
    assert!(!k.has_waiting(), "an existing key's reply asks for nothing more");
    let (_, out, _) = write_hits(&mut k, &["K:a:aaa"], t0 + Duration::from_secs(100));
    assert!(out.ends_with(&encoded(&[b"EXPIRE", b"K:a:aaa", b"6400"])), "due again after the interval");
}

#[test]
fn a_key_the_hit_created_gets_its_expire_in_the_next_write_before_anything_else() {
    let (mut k, t0) = (Keyed::default(), Instant::now());
    write_hits(&mut k, &["K:a:aaa"], t0);
    k.complete(Reply::Integer(1)).unwrap();
    k.complete(Reply::Integer(1)).unwrap();
    // Deleted (by /delete, another shard, or expiry): this shard's table cannot know, the reply can.
    let (t, _, _) = write_hits(&mut k, &["K:a:aaa", "K:a:aaa", "K:a:aaa"], t0 + Duration::from_secs(10));
    k.complete(Reply::Integer(3)).unwrap();
    assert_eq!(t.take(0), Answered::Int(1));
    assert!(k.has_waiting(), "the EXPIRE waits to be written");
    let (_, out, n) = write_hits(&mut k, &["K:a:bbb"], t0 + Duration::from_secs(11));
    let expire = encoded(&[b"EXPIRE", b"K:a:aaa", b"6400"]);
    assert!(out.starts_with(&expire), "{}", String::from_utf8_lossy(&out));
    assert_eq!(n, 3, "EXPIRE aaa, INCRBY bbb, EXPIRE bbb");
    assert!(k.owes_expires(), "written, not answered: a stopping shard waits");
    for reply in [1, 1, 1] {
        k.complete(Reply::Integer(reply)).unwrap();
    }
    assert!(!k.owes_expires());
    let mut alone = Vec::new();
    assert_eq!(k.encode_waiting_at(&mut alone, t0), 0, "written once");
}

#[test]
fn a_created_key_whose_refresh_was_pipelined_needs_no_second_expire() {
    let (mut k, t0) = (Keyed::default(), Instant::now());
    write_hits(&mut k, &["K:a:aaa"], t0);
    k.complete(Reply::Integer(1)).unwrap();
    k.complete(Reply::Integer(1)).unwrap();
    assert!(!k.has_waiting());
}

#[test]
fn no_ttl_means_no_expire_ever() {
    let mut k = Keyed::default();
    let t = KeyedTicket::default();
    t.arm(1);
    k.register(&t, 0, Op::Hit { key: b"K:a:aaa"[..].into(), ttl: None, existing_only: false, publish: None }, 10)
        .unwrap();
    let mut out = Vec::new();
    assert_eq!(k.encode_waiting(&mut out), 1);
    k.complete(Reply::Integer(1)).unwrap();
    assert_eq!((out, k.has_waiting()), (encoded(&[b"INCRBY", b"K:a:aaa", b"1"]), false));
}

#[test]
fn a_broken_connection_owes_an_expire_to_every_key_written_without_a_reply_and_forgets_refreshes() {
    let (mut k, t0) = (Keyed::default(), Instant::now());
    write_hits(&mut k, &["K:a:aaa"], t0);
    k.complete(Reply::Integer(4)).unwrap();
    k.complete(Reply::Integer(1)).unwrap();
    // Not due: a lone INCRBY, then the connection ends before its reply.
    write_hits(&mut k, &["K:a:aaa"], t0 + Duration::from_secs(1));
    assert_eq!(k.fail_all(Failure::Lost), 1);
    let mut out = Vec::new();
    k.encode_waiting_at(&mut out, t0 + Duration::from_secs(2));
    assert_eq!(out, encoded(&[b"EXPIRE", b"K:a:aaa", b"6400"]));
    k.complete(Reply::Integer(1)).unwrap();
    // An EXPIRE without its reply is owed again too; and the refresh table starts afresh.
    assert_eq!(k.fail_all(Failure::Lost), 0);
    let (_, out, _) = write_hits(&mut k, &["K:a:aaa"], t0 + Duration::from_secs(3));
    assert_eq!(out, [encoded(&[b"INCRBY", b"K:a:aaa", b"1"]), encoded(&[b"EXPIRE", b"K:a:aaa", b"6400"])].concat());
    k.fail_all(Failure::Lost);
    let mut out = Vec::new();
    k.encode_waiting_at(&mut out, t0 + Duration::from_secs(4));
    assert_eq!(out, encoded(&[b"EXPIRE", b"K:a:aaa", b"6400"]), "once, for the EXPIRE that had no reply");
}

#[test]
fn a_script_not_due_sets_the_ttl_only_on_a_counter_it_created() {
    let (mut k, t0) = (Keyed::default(), Instant::now());
    let t = KeyedTicket::default();
    let scripted = || Op::Hit { key: b"K:a:aaa"[..].into(), ttl: Some(TTL), existing_only: true, publish: None };
    t.arm(1);
    k.register(&t, 0, scripted(), 10).unwrap();
    let mut first = Vec::new();
    k.encode_waiting_at(&mut first, t0);
    k.complete(Reply::Integer(1)).unwrap();
    t.arm(1);
    k.register(&t, 0, scripted(), 10).unwrap();
    let mut second = Vec::new();
    assert_eq!(k.encode_waiting_at(&mut second, t0 + Duration::from_secs(1)), 1);
    let args =
        |if_created: &[u8]| encoded(&[b"EVAL", ADD_SCRIPT, b"1", b"K:a:aaa", b"1", b"6400", b"1", b"", if_created]);
    assert_eq!((first, second), (args(b"0"), args(b"1")));
    k.complete(Reply::Integer(1)).unwrap();
    assert!(!k.has_waiting(), "the script itself set the TTL of a counter it created");
}

#[test]
fn a_cluster_node_hands_a_redirected_expire_on_and_a_refused_one_is_owed() {
    let mut k = Keyed { follow_redirects: true, ..Keyed::default() };
    write_hits(&mut k, &["K:a:aaa"], Instant::now());
    k.complete(Reply::Integer(3)).unwrap();
    let Some(KeyedCompleted::Redirected(_, ops)) = k.complete(Reply::Error(b"MOVED 1 10.0.0.2:7000")) else {
        panic!("not handed back")
    };
    assert_eq!(ops.len(), 1);
    assert_eq!(ops[0].2, Op::Command(vec![b"EXPIRE".to_vec(), b"K:a:aaa".to_vec(), b"6400".to_vec()]));
    write_hits(&mut k, &["K:a:bbb"], Instant::now());
    k.complete(Reply::Integer(3)).unwrap();
    assert!(matches!(k.complete(Reply::Error(b"READONLY no")), Some(KeyedCompleted::NotPrimary(..))));
    assert_eq!(k.take_follow_ups(), vec![(Rc::from(&b"K:a:bbb"[..]), TTL)]);
}

#[test]
fn a_refused_expire_is_forgotten_so_the_next_hit_sends_one() {
    let (mut k, t0) = (Keyed::default(), Instant::now());
    write_hits(&mut k, &["K:a:aaa"], t0);
    k.complete(Reply::Integer(7)).unwrap();
    assert!(matches!(k.complete(Reply::Error(b"BUSY a script is running")), Some(KeyedCompleted::Served)));
    assert!(!k.has_waiting(), "not sent again at once");
    let (_, out, _) = write_hits(&mut k, &["K:a:aaa"], t0 + Duration::from_secs(1));
    assert!(out.ends_with(&encoded(&[b"EXPIRE", b"K:a:aaa", b"6400"])), "due again");
}

/// One key in the model of Redis.
struct Entry {
    value: i64,
    /// Seconds on the model's clock when it expires; `None`: never.
    expires_at: Option<u64>,
    /// When a hit last counted on it or a read last read it.
    last_hit: u64,
}

/// Redis as far as hits and reads go: INCRBY, GET, EXPIRE, expiry on a clock in seconds.
struct Model {
    now: u64,
    keys: HashMap<Vec<u8>, Entry>,
    seed: u64,
}

impl Model {
    /// Drops expired keys, checking the promise: no key expires before `ttl - interval` after
    /// its last hit or read.
    fn expire(&mut self) {
        let interval = refresh_interval(TTL).as_secs();
        let (now, seed) = (self.now, self.seed);
        self.keys.retain(|key, e| {
            let Some(at) = e.expires_at.filter(|&at| at <= now) else { return true };
            assert!(
                at >= e.last_hit + TTL - interval,
                "seed {seed}: {} expired at {at}, last hit at {}",
                String::from_utf8_lossy(key),
                e.last_hit
            );
            false
        });
    }

    /// Runs one command, answering as Redis would.
    fn run(&mut self, command: &[Vec<u8>]) -> Reply<'static> {
        self.expire();
        let now = self.now;
        match command[0].as_slice() {
            b"INCRBY" => {
                let n: i64 = std::str::from_utf8(&command[2]).unwrap().parse().unwrap();
                let e =
                    self.keys.entry(command[1].clone()).or_insert(Entry { value: 0, expires_at: None, last_hit: now });
                e.value += n;
                e.last_hit = now;
                Reply::Integer(e.value)
            }
            b"GET" => match self.keys.get_mut(&command[1]) {
                Some(e) => {
                    e.last_hit = now;
                    Reply::Bulk(Box::leak(e.value.to_string().into_bytes().into_boxed_slice()))
                }
                None => Reply::Nil,
            },
            b"EXPIRE" => {
                let ttl: u64 = std::str::from_utf8(&command[2]).unwrap().parse().unwrap();
                match self.keys.get_mut(&command[1]) {
                    Some(e) => {
                        e.expires_at = Some(now + ttl);
                        Reply::Integer(1)
                    }
                    None => Reply::Integer(0),
                }
            }
            other => panic!("seed {}: unexpected {}", self.seed, String::from_utf8_lossy(other)),
        }
    }

    /// Every existing counter has a TTL in (0, TTL].
    fn check(&mut self) {
        self.expire();
        for (key, e) in &self.keys {
            let left = e.expires_at.map(|at| at - self.now);
            assert!(
                left.is_some_and(|l| l > 0 && l <= TTL),
                "seed {}: {} has TTL {left:?} at {}",
                self.seed,
                String::from_utf8_lossy(key),
                self.now
            );
        }
    }
}

/// Splits a write into its commands.
fn commands(out: &[u8]) -> Vec<Vec<Vec<u8>>> {
    let mut at = 0;
    let mut all = Vec::new();
    while at < out.len() {
        let (frame, used) = resp::decode_frame(&out[at..]).unwrap().unwrap();
        at += used;
        let resp::Frame::Array(parts) = frame else { panic!("not a command") };
        all.push(parts.iter().map(|p| resp::frame_text(p).unwrap().as_bytes().to_vec()).collect());
    }
    all
}

/// Writes what `shard` has waiting; Redis runs the commands. With `broken`, the connection ends
/// after `broken.0` of them ran and `broken.1` replies arrived.
fn flush(model: &mut Model, shard: &mut Keyed, base: Instant, broken: Option<(usize, usize)>) {
    let mut out = Vec::new();
    shard.encode_waiting_at(&mut out, base + Duration::from_secs(model.now));
    let cmds = commands(&out);
    let (ran, replied) = broken.map_or((cmds.len(), cmds.len()), |(r, a)| (r % (cmds.len() + 1), a));
    let replies: Vec<Reply<'static>> = cmds[..ran].iter().map(|c| model.run(c)).collect();
    for reply in replies.into_iter().take(if broken.is_some() { replied % (ran + 1) } else { ran }) {
        shard.complete(reply).unwrap();
    }
    if broken.is_some() {
        shard.fail_all(Failure::Lost);
    }
}

/// A seeded randomized schedule: hits and reads (`/get`) on two shards (coalesced batches), deletes by someone else,
/// clock steps short and past the TTL, and connections that break part-way through a write
/// (commands run, replies lost). Whenever both shards are idle, every existing counter has a TTL
/// in (0, TTL]; and no counter ever expires earlier than `TTL - interval` after its last hit or read.
/// (The first version of this test let an EXPIRE owed after a broken connection wait while the
/// clock moved on, and found a counter expiring 157 s after its last hit: the promise assumes
/// the reconnect is quicker than the interval, which docs/api.md says.)
#[test]
fn randomized_hits_deletes_expiries_and_breaks_never_leave_a_counter_without_its_ttl() {
    let seed =
        std::env::var("HITCORE_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| fastrand::u64(..));
    eprintln!("seed {seed} (HITCORE_TEST_SEED={seed} reproduces)");
    let mut rng = fastrand::Rng::with_seed(seed);
    let keys = ["K:n:aaa", "K:n:bbb", "K:n:ccc", "K:n:ddd", "K:n:eee"];
    let base = Instant::now();
    let mut model = Model { now: 0, keys: HashMap::new(), seed };
    // Small tables, so that eviction is part of the schedule.
    let mut shards: Vec<Keyed> =
        (0..2).map(|_| Keyed { refreshed: Refreshed::with_capacity(2), ..Keyed::default() }).collect();
    for _ in 0..2000 {
        match rng.u8(..100) {
            0..=59 => {
                let shard = &mut shards[rng.usize(..2)];
                let t = KeyedTicket::default();
                let n = rng.usize(1..8);
                t.arm(n);
                for i in 0..n {
                    let key = keys[rng.usize(..keys.len())];
                    let op = if rng.u8(..10) < 3 {
                        Op::Read { key: key.as_bytes().into(), ttl: Some(TTL) }
                    } else {
                        hit(key)
                    };
                    shard.register(&t, i, op, u64::MAX).unwrap();
                }
                // What a reply or a broken connection leaves owed is written at once (the
                // reader wakes the writer; a new connection writes it first), before the clock
                // moves; those writes may break too.
                loop {
                    let broken = (rng.u8(..10) == 0).then(|| (rng.usize(..), rng.usize(..)));
                    flush(&mut model, shard, base, broken);
                    if !shard.has_waiting() {
                        break;
                    }
                }
            }
            60..=69 => {
                model.keys.remove(keys[rng.usize(..keys.len())].as_bytes());
            }
            70..=84 => model.now += rng.u64(0..150),
            85..=87 => model.now += rng.u64(TTL - 200..TTL + 200),
            _ => {
                // Both shards idle: what is owed is written and answered (no break).
                for shard in &mut shards {
                    while shard.has_waiting() {
                        flush(&mut model, shard, base, None);
                    }
                    assert!(!shard.has_sent(), "seed {seed}");
                }
                model.check();
            }
        }
    }
}
