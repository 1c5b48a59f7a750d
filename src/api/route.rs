//! From a request head to what the counting API will do: the route, the names (validated, the
//! reserved ones resolved), the query (`value`, `initializer`, `callback`, `token`) and the headers
//! it reads (`Origin`, `Referer`, `Authorization`). Bad input becomes its 4xx answer here, before
//! anything reaches Redis.
//!
//! Pure: bytes in (with the spans the HTTP parser found, `crate::http::parse::Fields`), a [`Call`]
//! out. It must not tokenise the head again, touch Redis or sockets, nor write HTTP bytes.

use super::auth;
use super::json;
use super::names::{self, DEFAULT_NAMESPACE, Names, Sources};
use super::reply::Reply;
use crate::http::parse::{Fields, Span};
use smallvec::SmallVec;

/// The API's routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `GET /hit/...`: count one and answer the new value.
    Hit,
    /// `GET /get/...`: the value, without counting.
    Get,
    /// `GET|POST /create/...`: a new counter and its admin key.
    Create,
    /// `GET /info/...`: value, expiry, whether it has an admin key.
    Info,
    /// `POST /set/...?value=N` (admin).
    Set,
    /// `POST /reset/...` (admin).
    Reset,
    /// `POST /update/...?value=±N` (admin).
    Update,
    /// `POST /delete/...` (admin).
    Delete,
    /// `GET /stream/...`: Server-Sent Events, with `--api-stream`.
    Stream,
}

impl Route {
    fn from_segment(s: &str) -> Option<Route> {
        Some(match s {
            "hit" => Route::Hit,
            "get" => Route::Get,
            "create" => Route::Create,
            "info" => Route::Info,
            "set" => Route::Set,
            "reset" => Route::Reset,
            "update" => Route::Update,
            "delete" => Route::Delete,
            "stream" => Route::Stream,
            _ => return None,
        })
    }

    /// The methods the route answers, for `Allow`.
    pub fn allow(self) -> &'static str {
        match self {
            Route::Hit | Route::Stream => "GET, OPTIONS",
            Route::Get | Route::Info => "GET, HEAD, OPTIONS",
            Route::Create => "GET, POST, OPTIONS",
            Route::Set | Route::Reset | Route::Update | Route::Delete => "POST, OPTIONS",
        }
    }

    /// Whether the route needs an admin token.
    pub fn is_admin(self) -> bool {
        matches!(self, Route::Set | Route::Reset | Route::Update | Route::Delete)
    }

    /// The route's place in `crate::metrics::shm::API_ROUTES` (the admin routes share one).
    pub fn metric_index(self) -> usize {
        match self {
            Route::Hit => 0,
            Route::Get => 1,
            Route::Create => 2,
            Route::Info => 3,
            Route::Set | Route::Reset | Route::Update | Route::Delete => 4,
            Route::Stream => 5,
        }
    }

    /// The route's name in paths.
    pub fn label(self) -> &'static str {
        match self {
            Route::Hit => "hit",
            Route::Get => "get",
            Route::Create => "create",
            Route::Info => "info",
            Route::Set => "set",
            Route::Reset => "reset",
            Route::Update => "update",
            Route::Delete => "delete",
            Route::Stream => "stream",
        }
    }

    fn accepts(self, method: &str) -> bool {
        match self {
            Route::Hit | Route::Stream => method == "GET",
            Route::Get | Route::Info => method == "GET" || method == "HEAD",
            Route::Create => method == "GET" || method == "POST",
            _ => method == "POST",
        }
    }
}

/// A valid request, ready for Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The route.
    pub route: Route,
    /// The namespace and key, resolved.
    pub names: Names,
    /// `?value=` for `/set` and `/update`; `?initializer=` (default 0) for `/create`.
    pub value: i64,
    /// The admin token presented, if any.
    pub token: Option<String>,
}

/// What the API does with one request: ask Redis, or answer at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Valid: its Redis rounds come next.
    Request(Request),
    /// Decided without Redis (a bad name, a missing token, a preflight).
    Done(Reply),
}

/// One API request: what it asks and how its answer is dressed (CORS, JSONP, HEAD).
#[derive(Debug)]
pub struct Call {
    /// What to do.
    pub step: Step,
    /// The route, when the path named one (for metrics).
    pub route: Route,
    /// The request's `Origin`, for the CORS answer.
    pub origin: Option<String>,
    /// `?callback=`, checked.
    pub callback: Option<String>,
    /// A HEAD request: the body is left out.
    pub head_only: bool,
    /// `X-Forwarded-For`, for the client address `--rate-limit` counts.
    pub forwarded_for: Option<String>,
    /// The client address, once the connection has applied the PROXY and forwarded rules.
    pub client: Option<std::net::IpAddr>,
    /// `/stream`: the subscription the connection streams from once the first answer is out.
    pub subscription: Option<crate::redis::subscribe::Subscription>,
    /// `/hit/.../shield`, `/get/.../shield`: the badge to draw the value with.
    pub badge: Option<crate::badge::Badge<'static>>,
}

/// The parts of a head the API reads.
struct Head<'a> {
    method: &'a str,
    path: &'a str,
    query: &'a str,
    origin: Option<&'a str>,
    referer: Option<&'a str>,
    authorization: Option<&'a str>,
    forwarded_for: Option<&'a str>,
}

/// The API's parts of `head`, where the connection's parser found them (`fields`).
fn read_head<'a>(head: &'a [u8], fields: &Fields) -> Option<Head<'a>> {
    let text = |span: Span| std::str::from_utf8(span.of(head)).ok();
    // The target in origin form: the parser has undone an absolute form.
    let (method, target) = (text(fields.method)?, text(fields.target)?);
    let (path, query) = match target.bytes().position(|b| b == b'?') {
        Some(i) => (&target[..i], &target[i + 1..]),
        None => (target, ""),
    };
    let value = |span: Option<Span>| span.and_then(text).map(str::trim);
    Some(Head {
        method,
        path,
        query,
        origin: value(fields.origin),
        referer: value(fields.referer),
        authorization: value(fields.authorization),
        forwarded_for: value(fields.forwarded_for),
    })
}

/// The `/`-separated segments of `path`, outer slashes trimmed (never none: `/` is one empty
/// segment). Byte loops, not `str` patterns: on paths this short the patterns' memchr set-up cost
/// about 3 % of a `/hit` (callgrind), and `/` and `?` are ASCII, so every cut is a char boundary.
fn segments(path: &str) -> SmallVec<[&str; 4]> {
    let path = path.trim_matches('/');
    let mut out = SmallVec::new();
    let mut start = 0;
    for (i, b) in path.bytes().enumerate() {
        if b == b'/' {
            out.push(&path[start..i]);
            start = i + 1;
        }
    }
    out.push(&path[start..]);
    out
}

/// The API's reading of a request head, or `None` when its path is none of the API's (the
/// connection then answers as it always has: 404).
pub fn parse(head: &[u8], fields: &Fields) -> Option<Call> {
    let h = read_head(head, fields)?;
    let mut rest = segments(h.path);
    let route = Route::from_segment(rest.remove(0))?;
    let mut callback = None;
    let mut token = None;
    let mut value = None;
    let mut initializer = None;
    for (k, v) in url::form_urlencoded::parse(h.query.as_bytes()) {
        match &*k {
            "callback" => callback = Some(v.into_owned()),
            "token" => token = Some(v.into_owned()),
            "value" => value = Some(v.into_owned()),
            "initializer" => initializer = Some(v.into_owned()),
            _ => {}
        }
    }
    let mut call = Call {
        step: Step::Done(Reply::preflight()),
        route,
        origin: h.origin.map(str::to_string),
        callback: None,
        head_only: h.method == "HEAD",
        forwarded_for: h.forwarded_for.map(str::to_string),
        client: None,
        subscription: None,
        badge: None,
    };
    if h.method == "OPTIONS" {
        return Some(call);
    }
    let done = |reply: Reply| Step::Done(reply);
    // `/hit/{ns}/{key}/shield` and `/get/{ns}/{key}/shield`: the badge's query is checked first, so
    // that a bad one touches no counter.
    if matches!(route, Route::Hit | Route::Get) && rest.len() == 3 && rest[2] == "shield" {
        rest.pop();
        match crate::badge::Badge::from_query(h.query) {
            Ok(badge) => call.badge = Some(badge.into_owned()),
            Err(e) => {
                call.step = done(Reply::error(400, &e.to_string()));
                return Some(call);
            }
        }
    }
    call.step = match check(&h, route, &rest, callback.as_deref(), value.as_deref(), initializer.as_deref()) {
        Err(reply) => done(reply),
        Ok((names, value)) => {
            let token = auth::presented(h.authorization, token.as_deref()).map(str::to_string);
            if route.is_admin() && token.is_none() {
                done(Reply::error(401, "Authorization required: Authorization: Bearer ADMIN_KEY or ?token=ADMIN_KEY"))
            } else {
                Step::Request(Request { route, names, value, token })
            }
        }
    };
    // A callback is honoured once it is known to be safe (check refused any other).
    call.callback = callback.filter(|c| json::valid_callback(c));
    Some(call)
}

/// Checks everything but the token: method, path shape, names, query values.
fn check(
    h: &Head<'_>,
    route: Route,
    rest: &[&str],
    callback: Option<&str>,
    value: Option<&str>,
    initializer: Option<&str>,
) -> Result<(Names, i64), Reply> {
    if !route.accepts(h.method) {
        return Err(Reply::method_not_allowed(route.allow()));
    }
    if callback.is_some_and(|c| !json::valid_callback(c)) {
        return Err(Reply::error(400, "callback must be a JavaScript identifier such as cb or app.set_count"));
    }
    let names = match (route, rest) {
        (Route::Create, [] | [""]) => {
            let random = auth::random_name().and_then(|ns| Ok(Names::new(&ns, &auth::random_name()?)));
            random.map_err(|_| Reply::error(500, "Failed to generate random string. Try again later."))?
        }
        (_, [key]) if !key.is_empty() => Names::new(DEFAULT_NAMESPACE, resolve(key, "key", h)?),
        (_, [namespace, key]) => Names::new(resolve(namespace, "namespace", h)?, resolve(key, "key", h)?),
        _ => return Err(Reply::error(404, "Route not found. Use /hit/:namespace/:key or /hit/:key instead.")),
    };
    let number = |raw: Option<&str>, what: &str| -> Result<Option<i64>, Reply> {
        raw.map(|v| v.trim().parse::<i64>().map_err(|_| Reply::error(400, &format!("{what} must be a number"))))
            .transpose()
    };
    let value = match route {
        Route::Create => number(initializer, "initializer")?.unwrap_or(0),
        Route::Set | Route::Update => {
            let Some(v) = number(value, "value")? else {
                return Err(Reply::error(
                    400,
                    "value is required, please provide a number in the fmt of ?value=NEW_VALUE",
                ));
            };
            if route == Route::Update && v == 0 {
                return Err(Reply::error(
                    400,
                    "changing value by 0 does nothing, please provide a non-zero value in the fmt of ?value=NEW_VALUE",
                ));
            }
            v
        }
        _ => 0,
    };
    Ok((names, value))
}

fn resolve<'a>(segment: &'a str, what: &'static str, h: &Head<'a>) -> Result<&'a str, Reply> {
    let sources = Sources { origin: h.origin, referer: h.referer };
    names::resolve(segment, what, sources).map_err(|e| Reply::error(400, &e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `head` as a connection reads it: the HTTP parser first, then the API.
    fn parse_whole(head: &[u8]) -> Option<Call> {
        use crate::http::parse::{Limits, Parser, Step};
        let mut parser = Parser::new(Limits::default());
        match parser.step(head) {
            Ok(Step::Request(r)) => parse(&head[..r.head_len], parser.fields()),
            other => panic!("the HTTP parser did not take {head:?}: {other:?}"),
        }
    }

    fn call(request_line: &str, headers: &str) -> Option<Call> {
        parse_whole(format!("{request_line} HTTP/1.1\r\nHost: x\r\n{headers}\r\n").as_bytes())
    }

    /// The API's parts of a head as httparse tokenises it on its own: what the API read before
    /// the HTTP parser handed it the spans, kept as the oracle.
    fn parts_by_httparse(head: &[u8]) -> Option<[Option<String>; 6]> {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        req.parse(head).ok()?;
        let find = |name: &str| {
            req.headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .and_then(|h| std::str::from_utf8(h.value).ok())
                .map(|v| v.trim().to_string())
        };
        // The path after an absolute form's authority (the generator's targets have a `/` there).
        let origin =
            |p: &str| p.split_once("://").map_or(p, |(_, rest)| &rest[rest.find('/').unwrap_or(0)..]).to_string();
        Some([
            req.method.map(str::to_string),
            req.path.map(origin),
            find("origin"),
            find("referer"),
            find("authorization"),
            find("x-forwarded-for"),
        ])
    }

    /// Seeded: for heads with the API's headers in any case, order, repetition and spacing, among
    /// others, the spans the HTTP parser hands over read the same parts httparse finds alone.
    #[test]
    fn the_parsers_spans_read_what_httparse_reads() {
        use crate::http::parse::{Limits, Parser, Step};
        let seed = fastrand::u64(..);
        let mut rng = fastrand::Rng::with_seed(seed);
        let names = ["Origin", "REFERER", "authorization", "X-Forwarded-For", "x-forwarded-for", "Accept", "Expect"];
        let values = ["https://a.org", " https://b.org/p ", "Bearer abc", "10.0.0.1, 10.0.0.2", "", "caf\u{e9}", "x"];
        for _ in 0..5_000 {
            let method = ["GET", "HEAD", "POST", "OPTIONS", "PATCH"][rng.usize(..5)];
            let target = ["/hit/a/b", "/get/aaa/bbb?x=1", "http://h:1/info/x/y", "/", "/create/"][rng.usize(..5)];
            let mut head = format!("{method} {target} HTTP/1.1\r\nHost: x\r\n");
            for _ in 0..rng.usize(0..6) {
                let (name, value) = (names[rng.usize(..names.len())], values[rng.usize(..values.len())]);
                if name != "Expect" {
                    head.push_str(&format!("{name}:{}{value}\r\n", if rng.bool() { " " } else { "" }));
                }
            }
            head.push_str("\r\n");
            let head = head.as_bytes();
            let mut parser = Parser::new(Limits::default());
            let Ok(Step::Request(_)) = parser.step(head) else { panic!("seed {seed}: {head:?}") };
            let f = parser.fields();
            let text = |s: Span| String::from_utf8(s.of(head).to_vec()).ok();
            let value = |s: Option<Span>| s.and_then(text).map(|v| v.trim().to_string());
            let ours = [
                text(f.method),
                text(f.target),
                value(f.origin),
                value(f.referer),
                value(f.authorization),
                value(f.forwarded_for),
            ];
            assert_eq!(Some(ours), parts_by_httparse(head), "seed {seed}: {:?}", String::from_utf8_lossy(head));
        }
    }

    fn request(c: Option<Call>) -> Request {
        match c.expect("an API call").step {
            Step::Request(r) => r,
            Step::Done(reply) => panic!("answered at once: {reply:?}"),
        }
    }

    fn status(c: Option<Call>) -> u16 {
        match c.expect("an API call").step {
            Step::Done(reply) => reply.status,
            Step::Request(r) => panic!("went on to Redis: {r:?}"),
        }
    }

    #[test]
    fn segments_are_what_str_split_gives() {
        for path in ["/", "", "//", "/hit/a/b", "hit/a/b/", "/hit//b", "/a/b/c/d/e/f", "/caf\u{e9}/x", "///x///"] {
            let expected: Vec<&str> = path.trim_matches('/').split('/').collect();
            assert_eq!(segments(path).to_vec(), expected, "{path:?}");
        }
    }

    #[test]
    fn routes_and_names() {
        let r = request(call("GET /hit/site/page", ""));
        assert_eq!((r.route, r.names.namespace(), r.names.key()), (Route::Hit, "site", "page"));
        let r = request(call("GET /hit/page/", ""));
        assert_eq!((r.names.namespace(), r.names.key()), ("default", "page"));
        let r = request(call("GET http://h:1/get/aaa/bbb?x=1", ""));
        assert_eq!((r.route, r.names.key()), (Route::Get, "bbb"));
        // The scheme in any case, as the parser reads it (this was a 404 while the API undid the
        // absolute form itself, case-sensitively).
        let r = request(call("GET HTTPS://h/hit/aaa/bbb", ""));
        assert_eq!((r.route, r.names.key()), (Route::Hit, "bbb"));
        let r = request(call("POST /create/aaa/bbb?initializer=-5", ""));
        assert_eq!((r.route, r.value), (Route::Create, -5));
        let r = request(call("GET /create/", ""));
        assert_eq!((r.names.namespace().len(), r.names.key().len()), (16, 16));
        let r = request(call("GET /hit/:HOST:/:PATH:", "Origin: https://a.org\r\nReferer: https://a.org/p\r\n"));
        assert_eq!((r.names.namespace(), r.names.key()), ("https://a.org", "https://a.org/p"));
        assert!(call("GET /", "").is_none());
        assert!(call("GET /healthz", "").is_none());
        assert!(call("GET /hits/a/b", "").is_none());
        let c = call("GET /hit/site/page/shield?text=views", "").unwrap();
        assert!(c.badge.is_some());
        assert_eq!(request(Some(c)).names.key(), "page");
        assert_eq!(status(call("GET /get/site/page/shield?fontsize=99", "")), 400);
        assert!(call("GET /hit/site/shield", "").unwrap().badge.is_none(), "two names: the key is 'shield'");
    }

    #[test]
    fn bad_input_is_answered_before_redis() {
        assert_eq!(status(call("GET /hit/ab", "")), 400);
        assert_eq!(status(call(&format!("GET /hit/{}", "a".repeat(65)), "")), 400);
        assert_eq!(status(call("GET /hit/a%20b/ccc", "")), 400);
        assert_eq!(status(call("GET /hit/a/b/c/d", "")), 404);
        assert_eq!(status(call("GET /hit/:HOST:/abc", "")), 400);
        assert_eq!(status(call("HEAD /hit/abc", "")), 405);
        assert_eq!(status(call("GET /set/abc?value=1", "")), 405);
        assert_eq!(status(call("POST /set/abc", "Authorization: Bearer t\r\n")), 400);
        assert_eq!(status(call("POST /set/abc?value=x", "Authorization: Bearer t\r\n")), 400);
        assert_eq!(status(call("POST /update/abc?value=0&token=t", "")), 400);
        assert_eq!(status(call("GET /create/abc/def?initializer=1.5", "")), 400);
        assert_eq!(status(call("GET /hit/abc?callback=alert(1)", "")), 400);
        assert_eq!(status(call("OPTIONS /hit/abc", "")), 204);
    }

    #[test]
    fn admin_routes_need_a_token_from_the_header_or_the_query() {
        assert_eq!(status(call("POST /reset/abc", "")), 401);
        assert_eq!(request(call("POST /reset/abc?token=q", "")).token.as_deref(), Some("q"));
        let r = request(call("POST /update/ns1/abc?value=-3", "Authorization: Bearer sec\r\n"));
        assert_eq!((r.route, r.value, r.token.as_deref()), (Route::Update, -3, Some("sec")));
    }

    proptest::proptest! {
        /// Whatever path, query and headers a head carries, reading it never panics, and a request
        /// that goes on to Redis has valid names (or reserved ones resolved from a URL) and a
        /// callback only if it is an identifier.
        #[test]
        fn any_head_is_refused_or_has_valid_names(
            route in "(hit|get|create|info|set|reset|update|delete|stream)",
            segments in proptest::collection::vec("[A-Za-z0-9_.:%*-]{0,70}", 0..4),
            query in "[a-z=&%0-9.+-]{0,40}",
            origin in proptest::option::of("(https?://)?[a-z0-9./ <>-]{0,80}"),
        ) {
            let line = format!("POST /{route}/{}?{query}", segments.join("/"));
            let headers = origin.map(|o| format!("Origin: {o}\r\nReferer: {o}\r\n")).unwrap_or_default();
            if let Some(c) = call(&line, &headers) {
                if let Some(cb) = &c.callback {
                    proptest::prop_assert!(json::valid_callback(cb));
                }
                if let Step::Request(r) = c.step {
                    for name in [r.names.namespace(), r.names.key()] {
                        let url = name.starts_with("http://") || name.starts_with("https://");
                        proptest::prop_assert!(url || names::validate(name, "key").is_ok(), "{name:?}");
                        proptest::prop_assert!(name.len() <= names::MAX_LEN);
                    }
                }
            }
        }
    }

    #[test]
    fn callback_and_origin_are_kept_for_the_answer() {
        let c = call("GET /get/abc?callback=cb.x", "Origin: https://o.example\r\n").unwrap();
        assert_eq!((c.callback.as_deref(), c.origin.as_deref()), (Some("cb.x"), Some("https://o.example")));
    }
}
