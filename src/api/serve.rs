//! The counting API's conversation with Redis for one connection's batch: each request's commands,
//! in rounds (most routes need one; `/create` and the admin routes checked against a counter's own
//! admin key need two), and the answer each request gets from the replies.
//!
//! All the batch's requests of a round are registered at once, before any await, so they go out
//! in the shard's next write together with the seed counter's `INCRBY` and every other
//! connection's; hits on one key are coalesced there (`crate::redis::keyed`). It must not parse
//! requests (`route` does) or write bytes (`reply` does).

use smallvec::SmallVec;
use tracing::debug;

use super::Api;
use super::auth;
use super::json::{self, Value};
use super::reply::Reply;
use super::route::{Call, Request, Route, Step};
use super::settings::RateLimit;
use crate::redis::client::{Failure, Redis};
use crate::redis::keyed::{ADD_SCRIPT, Answered, KeyedTicket, Op, SET_SCRIPT};

/// Where a request is in its rounds.
#[derive(Debug, Clone)]
enum Stage {
    /// Its first round.
    Start,
    /// `/create`: the counter was made; its admin key is stored next.
    StoreAdminKey(String),
    /// An admin route whose token was accepted: the change itself.
    Authorized,
}

/// What one round's replies decided.
enum Next {
    Done(Reply),
    Again(Stage),
}

/// Runs every API request of a batch to its answer: afterwards each call's step is `Done`.
///
/// `ticket` is the connection's: re-armed per round, so a batch allocates none.
pub async fn run(api: &Api, redis: &Redis, ticket: &KeyedTicket, calls: &mut [&mut Call]) {
    // A batch is most often one request: its bookkeeping stays on the stack.
    let mut stages: SmallVec<[Option<Stage>; 2]> = calls
        .iter()
        .map(|c| match &c.step {
            Step::Request(r) if r.route.is_admin() && global_token_matches(api, r) => Some(Stage::Authorized),
            Step::Request(_) => Some(Stage::Start),
            Step::Done(_) => None,
        })
        .collect();
    // A stream listens before it reads the current value, so that no change falls between them:
    // it waits for Redis to confirm the subscription (at most --redis-timeout, else 503).
    for call in calls.iter_mut() {
        if let Step::Request(r) = &call.step {
            if r.route == Route::Stream {
                call.subscription = Some(redis.subscribe(r.names.stream_channel().as_bytes()));
            }
        }
    }
    for (call, stage) in calls.iter_mut().zip(&mut stages) {
        if let Some(subscription) = &call.subscription {
            let confirmed = async {
                subscription.ready().await;
                true
            };
            let late = async {
                glommio::timer::sleep(redis.timeout()).await;
                false
            };
            if !futures_lite::future::or(confirmed, late).await {
                call.step = Step::Done(Reply::unavailable());
                call.subscription = None;
                *stage = None;
            }
        }
    }
    if let Some(limit) = api.settings.rate_limit {
        limit_rate(limit, redis, ticket, calls, &mut stages).await;
    }
    while stages.iter().any(Option::is_some) {
        // One round: every call still going registers its commands, then all wait together.
        let mut spans: SmallVec<[std::ops::Range<usize>; 2]> = SmallVec::with_capacity(calls.len());
        let mut ops: Ops = SmallVec::new();
        for (call, stage) in calls.iter().zip(&stages) {
            let (Step::Request(req), Some(stage)) = (&call.step, stage) else {
                spans.push(0..0);
                continue;
            };
            let start = ops.len();
            commands(api, req, stage, &mut ops);
            spans.push(start..ops.len());
        }
        ticket.arm(ops.len());
        redis.keyed(ticket, ops.into_iter().enumerate());
        ticket.wait().await;
        for ((call, stage), span) in calls.iter_mut().zip(&mut stages).zip(spans) {
            let (Step::Request(req), Some(current)) = (&call.step, stage.take()) else { continue };
            let answers: Answers = span.map(|i| ticket.take(i)).collect();
            match decide(api, req, current, &answers) {
                Next::Done(reply) => call.step = Step::Done(reply),
                Next::Again(next) => *stage = Some(next),
            }
        }
    }
}

/// `--rate-limit`: counts each request still going in its client's current window, one key per
/// client and window (`RL:{address}:{window}`, coalesced per key like a hit, expiring with the
/// window), and answers those beyond the limit 429 before any of their commands run.
async fn limit_rate(
    limit: RateLimit,
    redis: &Redis,
    ticket: &KeyedTicket,
    calls: &mut [&mut Call],
    stages: &mut [Option<Stage>],
) {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let window = now / limit.window;
    let retry_after = limit.window - now % limit.window;
    let counted: Vec<usize> = (0..calls.len()).filter(|&i| stages[i].is_some() && calls[i].client.is_some()).collect();
    if counted.is_empty() {
        return;
    }
    ticket.arm(counted.len());
    let ops = counted.iter().enumerate().map(|(n, &i)| {
        let client = calls[i].client.map(|c| c.to_string()).unwrap_or_default();
        let key = format!("RL:{client}:{window}");
        (n, Op::Hit { key: key.as_bytes().into(), ttl: Some(limit.window), existing_only: false, publish: None })
    });
    redis.keyed(ticket, ops.collect::<Vec<_>>());
    ticket.wait().await;
    for (n, &i) in counted.iter().enumerate() {
        let answer = ticket.take(n);
        let reply = match &answer {
            Answered::Int(v) if *v as u64 <= limit.requests => continue,
            Answered::Int(_) => Reply {
                retry_after: Some(retry_after),
                ..Reply::error(429, "Too many requests, please try again later.")
            },
            other => failed(other).unwrap_or_else(Reply::unavailable),
        };
        calls[i].step = Step::Done(reply);
        stages[i] = None;
    }
}

fn global_token_matches(api: &Api, req: &Request) -> bool {
    match (&api.settings.admin_token, &req.token) {
        (Some(global), Some(token)) => auth::same(global.as_bytes(), token.as_bytes()),
        _ => false,
    }
}

fn command(args: &[&[u8]]) -> Op {
    Op::Command(args.iter().map(|a| a.to_vec()).collect())
}

/// A round's commands, in order (most rounds are one request's one command).
type Ops = SmallVec<[Op; 2]>;

/// One request's replies in a round: at most three commands (`/info`), so they stay on the stack
/// (a heap vector per request was a measurable share of a `/hit`'s CPU).
type Answers = SmallVec<[Answered; 3]>;

/// Appends the commands of one request's round to `ops`. Only what the route needs is built: a
/// hit is one key, with no admin key, number or channel text.
fn commands(api: &Api, req: &Request, stage: &Stage, ops: &mut Ops) {
    let k = req.names.counter_key();
    let a = || req.names.admin_key();
    let ttl = api.settings.ttl();
    let ttl_text = || itoa::Buffer::new().format(ttl.unwrap_or(0)).to_string();
    let value = || itoa::Buffer::new().format(req.value).to_string();
    // With `--api-stream` every change is published for `/stream`; an empty channel publishes nothing.
    let channel = || if api.settings.stream { req.names.stream_channel() } else { String::new() };
    let set_existing = |v: &str| {
        let (ttl, channel) = (ttl_text(), channel());
        command(&[b"EVAL", SET_SCRIPT, b"1", &k[..], v.as_bytes(), ttl.as_bytes(), channel.as_bytes()])
    };
    match (req.route, stage) {
        (Route::Hit, _) => ops.push(Op::Hit {
            key: k.clone(),
            ttl,
            existing_only: api.settings.mode == super::settings::Mode::Closed,
            publish: api.settings.stream.then(|| channel().as_bytes().into()),
        }),
        (Route::Stream, _) => ops.push(command(&[b"GET", &k[..]])),
        // A counter that is read stays, as Abacus refreshes it on reads (once per refresh interval).
        (Route::Get, _) => ops.push(Op::Read { key: k.clone(), ttl }),
        (Route::Info, _) => {
            ops.extend([command(&[b"GET", &k[..]]), command(&[b"TTL", &k[..]]), command(&[b"EXISTS", a().as_bytes()])])
        }
        (Route::Create, Stage::StoreAdminKey(admin)) => {
            ops.push(command(&[b"SET", a().as_bytes(), admin.as_bytes()]));
            if api.settings.stream {
                // A stream opened before the counter existed starts from its first value.
                ops.push(command(&[b"PUBLISH", channel().as_bytes(), value().as_bytes()]));
            }
        }
        (Route::Create, _) => ops.push(match ttl {
            Some(_) => command(&[b"SET", &k[..], value().as_bytes(), b"NX", b"EX", ttl_text().as_bytes()]),
            None => command(&[b"SET", &k[..], value().as_bytes(), b"NX"]),
        }),
        (_, Stage::Start | Stage::StoreAdminKey(_)) => ops.push(command(&[b"GET", a().as_bytes()])),
        (Route::Set, Stage::Authorized) => ops.push(set_existing(&value())),
        (Route::Reset, Stage::Authorized) => ops.push(set_existing("0")),
        (Route::Update, Stage::Authorized) => {
            let (n, ttl, channel) = (value(), ttl_text(), channel());
            let (n, ttl, channel) = (n.as_bytes(), ttl.as_bytes(), channel.as_bytes());
            ops.push(command(&[b"EVAL", ADD_SCRIPT, b"1", &k[..], n, ttl, b"1", channel]));
        }
        (Route::Delete, Stage::Authorized) => {
            ops.extend([command(&[b"DEL", &k[..]]), command(&[b"DEL", a().as_bytes()])])
        }
    }
}

/// The answer a failed command gives its request.
fn failed(answer: &Answered) -> Option<Reply> {
    match answer {
        Answered::Failed(Failure::ErrorReply) | Answered::Error(_) => {
            if let Answered::Error(message) = answer {
                debug!("Redis answered an API command with an error: {}", crate::logging::escape(message));
            }
            Some(Reply::error(500, "Failed to get data. Try again later."))
        }
        Answered::Failed(_) => Some(Reply::unavailable()),
        _ => None,
    }
}

fn int(answer: &Answered) -> Option<i64> {
    match answer {
        Answered::Int(v) => Some(*v),
        Answered::Text(t) => std::str::from_utf8(t).ok()?.parse().ok(),
        _ => None,
    }
}

fn not_found() -> Reply {
    Reply::error(404, "Key not found")
}

/// What one round's replies mean for a request.
fn decide(api: &Api, req: &Request, stage: Stage, answers: &[Answered]) -> Next {
    if let Some(reply) = answers.iter().find_map(failed) {
        return Next::Done(reply);
    }
    let first = answers.first().cloned().unwrap_or(Answered::Nil);
    // Only `/info` and `/delete` name the key in their answer.
    let k = || req.names.counter_key_text();
    let value_reply = |v: i64| Next::Done(Reply::value(v));
    let not_a_number = || Next::Done(Reply::error(500, "Failed to get data. Invalid data format."));
    match (req.route, stage) {
        (Route::Hit | Route::Get, _) => match first {
            Answered::Nil => Next::Done(not_found()),
            ref a => int(a).map_or_else(not_a_number, value_reply),
        },
        (Route::Stream, _) => Next::Done(Reply::event_stream(int(&first))),
        (Route::Info, _) => {
            let ttl = answers.get(1).and_then(int).unwrap_or(-2);
            let exists = ttl != -2;
            let value = if exists { int(&first).unwrap_or(0) } else { -1 };
            let genuine = answers.get(2).and_then(int) == Some(0);
            let body = json::object(&[
                ("value", Value::Int(value)),
                ("full_key", Value::Str(k())),
                ("is_genuine", Value::Bool(genuine)),
                ("expires_in", Value::Int(ttl)),
                ("expires_str", Value::Str(&json::go_duration(ttl))),
                ("exists", Value::Bool(exists)),
            ]);
            Next::Done(Reply::json(200, body))
        }
        (Route::Create, Stage::Start) => match first {
            Answered::Nil => Next::Done(Reply::error(409, "Key already exists, please use a different key.")),
            _ => match auth::admin_key() {
                Ok(admin) => Next::Again(Stage::StoreAdminKey(admin)),
                Err(_) => Next::Done(Reply::error(500, "Failed to generate an admin key. Try again later.")),
            },
        },
        (Route::Create, Stage::StoreAdminKey(admin)) => Next::Done(Reply::json(
            201,
            json::object(&[
                ("namespace", Value::Str(req.names.namespace())),
                ("key", Value::Str(req.names.key())),
                ("admin_key", Value::Str(&admin)),
                ("value", Value::Int(req.value)),
            ]),
        )),
        // `/create` needs no token, so `run` never starts it authorized.
        (Route::Create, Stage::Authorized) => Next::Done(Reply::error(500, "The request was not run")),
        (_, Stage::Start | Stage::StoreAdminKey(_)) => match (&first, &req.token) {
            (Answered::Text(stored), Some(token)) if auth::same(stored, token.as_bytes()) => {
                Next::Again(Stage::Authorized)
            }
            (Answered::Nil, _) if api.settings.admin_token.is_none() => Next::Done(Reply::error(
                403,
                "This counter has no admin key (it was made by a hit, not by /create), so it cannot be changed",
            )),
            _ => Next::Done(Reply::error(403, "Invalid token")),
        },
        (Route::Set | Route::Reset, Stage::Authorized) => match first {
            Answered::Nil => Next::Done(Reply::error(409, "Key does not exist, please use a different key.")),
            _ => value_reply(if req.route == Route::Set { req.value } else { 0 }),
        },
        (Route::Update, Stage::Authorized) => match first {
            Answered::Nil => Next::Done(Reply::error(409, "Key does not exist, please first create it using /create.")),
            ref a => int(a).map_or_else(not_a_number, value_reply),
        },
        (Route::Delete, Stage::Authorized) => Next::Done(Reply::json(
            200,
            json::object(&[("status", Value::Str("ok")), ("message", Value::Str(&format!("Deleted key: {}", k())))]),
        )),
    }
}
