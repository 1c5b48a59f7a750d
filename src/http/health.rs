//! The health check (`--health-path`, default `/healthz`) and what `HEAD /` answers.
//!
//! A load balancer must see what a client would get, and a probe must never add a hit. The health
//! check answers from this shard's own state: 200 when its Redis connection is up, no written
//! command has waited past `--redis-timeout` and the last reply was a value; 503 with a one-line
//! reason otherwise, and while the shard drains for a stop (so balancers take it out first).
//! `HEAD /` answers what `GET /` would without incrementing: 503 while Redis is down. It owns
//! recognising the health path in a request line and choosing these answers; it must not write bytes.

use super::context::Context;
use super::response::Answer;

/// Whether a request's target (in origin form, any query string: the parser has undone an
/// absolute form, [`crate::http::parse::Fields::target`]) names `path`. Every request that is not
/// `/` asks this first; reading the request line again for it cost about 3 % of a `/hit`'s
/// instructions (callgrind).
pub fn targets(target: &[u8], path: &str) -> bool {
    let path = path.as_bytes();
    target.starts_with(path) && matches!(target.get(path.len()), None | Some(b'?'))
}

/// The health check's answer now.
pub fn check(ctx: &Context) -> Answer {
    if ctx.draining.get() {
        return Answer::Health(Err("draining: this shard is stopping"));
    }
    Answer::Health(ctx.redis.health())
}

/// `HEAD /`: the headers `GET /` would get, without taking a value.
pub fn head_root(ctx: &Context) -> Answer {
    if ctx.redis.is_up() { Answer::Head } else { Answer::Unavailable }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::http::parse::{Limits, Parser, Step, Target};

    /// `targets` on `head` as a connection calls it: for a target other than `/`, with the target
    /// the HTTP parser found; `None` when the parser refuses the head or routes it elsewhere.
    fn head_targets(head: &[u8], path: &str) -> Option<bool> {
        let mut parser = Parser::new(Limits::default());
        match parser.step(head) {
            Ok(Step::Request(r)) if r.target == Target::Other => Some(targets(parser.fields().target.of(head), path)),
            _ => None,
        }
    }

    #[test]
    fn the_health_path_in_any_form() {
        let p = "/healthz";
        assert_eq!(head_targets(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", p), Some(true));
        assert_eq!(head_targets(b"\r\nHEAD /healthz?full=1 HTTP/1.0\r\n\r\n", p), Some(true));
        assert_eq!(head_targets(b"GET http://lb:80/healthz HTTP/1.0\r\n\r\n", p), Some(true));
        assert_eq!(head_targets(b"GET HTTPS://lb/healthz HTTP/1.0\r\n\r\n", p), Some(true));
        assert_eq!(head_targets(b"GET /healthz/x HTTP/1.0\r\n\r\n", p), Some(false));
        assert_eq!(head_targets(b"GET /health HTTP/1.0\r\n\r\n", p), Some(false));
        assert_eq!(head_targets(b"GET http://healthz/x HTTP/1.0\r\n\r\n", p), Some(false));
        assert!(!targets(b"", p));
    }

    fn after_authority(rest: &[u8]) -> &[u8] {
        rest.iter().position(|&b| b == b'/').map_or(b"/", |i| &rest[i..])
    }

    /// The reading of the whole head that `targets` replaced, kept as the oracle.
    fn targets_as_before(head: &[u8], path: &str) -> bool {
        let line = head.split(|&b| b == b'\n').find(|l| !l.is_empty() && *l != b"\r").unwrap_or_default();
        let Some(target) = line.split(|&b| b == b' ').nth(1) else { return false };
        let origin = match target.iter().position(|&b| b == b'/') {
            Some(0) => target,
            Some(_) if target.len() > 8 && target[..8].eq_ignore_ascii_case(b"https://") => {
                after_authority(&target[8..])
            }
            Some(_) if target.len() > 7 && target[..7].eq_ignore_ascii_case(b"http://") => {
                after_authority(&target[7..])
            }
            _ => return false,
        };
        origin.split(|&b| b == b'?').next().unwrap_or_default() == path.as_bytes()
    }

    /// Seeded: on request heads built from the pieces that matter (leading blank lines, methods,
    /// origin and absolute targets near the health path, queries, versions), wherever the HTTP
    /// parser takes the head, the target it found gives the answer the whole-head reading gave.
    #[test]
    fn agrees_with_the_whole_head_reading_on_any_head_the_parser_takes() {
        let seed = fastrand::u64(..);
        let mut rng = fastrand::Rng::with_seed(seed);
        let pick = |rng: &mut fastrand::Rng, options: &[&str]| options[rng.usize(..options.len())].to_string();
        let mut taken = 0;
        for _ in 0..20_000 {
            let mut head = String::new();
            for _ in 0..rng.usize(0..3) {
                head.push_str(&pick(&mut rng, &["\r\n", "\n", "\r"]));
            }
            head.push_str(&pick(&mut rng, &["GET ", "HEAD ", "POST ", "GET  ", "", "GET"]));
            head.push_str(&pick(&mut rng, &["", "http://", "HTTPS://", "https://", "http:/", "x"]));
            head.push_str(&pick(&mut rng, &["", "lb", "lb:80", "h/"]));
            head.push_str(&pick(&mut rng, &["/healthz", "/health", "/healthz/", "/", "", "/hit/a/b", "healthz"]));
            head.push_str(&pick(&mut rng, &["", "?", "?a=1", "x", "/x"]));
            head.push_str(&pick(&mut rng, &[" HTTP/1.1\r\nHost: x\r\n\r\n", " HTTP/1.0\r\n\r\n", "\r\n", ""]));
            for path in ["/healthz", "/", "/h"] {
                if let Some(got) = head_targets(head.as_bytes(), path) {
                    taken += 1;
                    assert_eq!(got, targets_as_before(head.as_bytes(), path), "seed {seed}: {head:?} {path}");
                }
            }
        }
        assert!(taken > 3_000, "seed {seed}: only {taken} heads were taken by the parser");
    }
}
