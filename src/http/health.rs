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

/// Whether the request line at the start of `head` targets `path` (origin or absolute form, any
/// query string).
pub fn targets(head: &[u8], path: &str) -> bool {
    let line = head.split(|&b| b == b'\n').find(|l| !l.is_empty() && *l != b"\r").unwrap_or_default();
    let Some(target) = line.split(|&b| b == b' ').nth(1) else { return false };
    let origin = match target.iter().position(|&b| b == b'/') {
        Some(0) => target,
        // Absolute form: `http://host[:port]/path`: the path starts at the first `/` after `//`.
        Some(_) if target.len() > 8 && target[..8].eq_ignore_ascii_case(b"https://") => after_authority(&target[8..]),
        Some(_) if target.len() > 7 && target[..7].eq_ignore_ascii_case(b"http://") => after_authority(&target[7..]),
        _ => return false,
    };
    let path_only = origin.split(|&b| b == b'?').next().unwrap_or_default();
    path_only == path.as_bytes()
}

fn after_authority(rest: &[u8]) -> &[u8] {
    rest.iter().position(|&b| b == b'/').map_or(b"/", |i| &rest[i..])
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

    #[test]
    fn the_health_path_in_any_form() {
        let p = "/healthz";
        assert!(targets(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", p));
        assert!(targets(b"\r\nHEAD /healthz?full=1 HTTP/1.1\r\n\r\n", p));
        assert!(targets(b"GET http://lb:80/healthz HTTP/1.1\r\n\r\n", p));
        assert!(targets(b"GET HTTPS://lb/healthz HTTP/1.1\r\n\r\n", p));
        assert!(!targets(b"GET /healthz/x HTTP/1.1\r\n\r\n", p));
        assert!(!targets(b"GET /health HTTP/1.1\r\n\r\n", p));
        assert!(!targets(b"GET http://healthz HTTP/1.1\r\n\r\n", p));
        assert!(!targets(b"GET", p));
    }
}
