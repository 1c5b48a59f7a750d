//! `--access-logformat`: gunicorn's access-log atoms, compiled once at start into pieces.
//!
//! The syntax is Python's `%` formatting against gunicorn's atom dictionary, so a gunicorn user's
//! format works unchanged: `%(h)s`, `%(-15h)s`-style flags and widths, `%%`, `%({header}i)s` and
//! `%({header}o)s`. Unknown atoms render `-`, as gunicorn's `SafeAtoms` does. The atoms:
//! `h` remote address, `l` `-`, `u` user (from `Authorization: Basic`), `t` time, `r` request line,
//! `m` method, `U` path (percent-decoded, then escaped), `q` query, `H` protocol, `s` status, `B` body bytes, `b` body
//! bytes or `-`, `f` referer, `a` user agent, `T`/`M`/`D` request time in whole seconds /
//! milliseconds / microseconds, `L` request time in decimal seconds, `p` `<pid>`, and of the
//! `{NAME}e` environ atoms `{wsgi.url_scheme}e`, `http` or `https` (others render `-`).
//! It owns the parsing and the rendering of one line from a request's [`Fields`]; it must not
//! buffer or write (the access log does) nor read sockets.

use std::fmt::Write as _;
use std::time::Duration;

use base64::Engine as _;

/// One atom.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Atom {
    Remote,
    Dash,
    User,
    Time,
    Line,
    Method,
    Path,
    Query,
    Protocol,
    Status,
    BytesB,
    Bytesb,
    Referer,
    Agent,
    Seconds,
    Millis,
    Micros,
    Decimal,
    Pid,
    /// Index into [`Format::request_headers`].
    RequestHeader(usize),
    /// A response header, lower-cased.
    ResponseHeader(String),
    /// `{wsgi.url_scheme}e`: `http` or `https`, as in gunicorn's WSGI environ.
    Scheme,
    /// Anything gunicorn does not know (or another `{x}e`): `-`.
    Unknown,
}

/// A piece of a compiled format.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    /// `name` is the atom as written (`h`, `{x-request-id}i`): its key in a JSON line.
    Atom {
        atom: Atom,
        width: usize,
        left: bool,
        name: String,
    },
}

/// A compiled format.
#[derive(Debug, Clone)]
pub struct Format {
    pieces: Vec<Piece>,
    /// Request headers the format needs (lower-case), besides those named by atoms.
    request_headers: Vec<String>,
    pid: String,
    /// `--log-format json`: one object per line, keyed by the atoms' names.
    json: bool,
}

/// What one line is rendered from. Everything taken from the client is already escaped.
#[derive(Debug, Clone, Copy)]
pub struct Fields<'a> {
    /// `h`: the client's address (after PROXY protocol and trusted `X-Forwarded-For`), or `-`.
    pub remote: &'a str,
    /// `t`: `[%d/%b/%Y:%H:%M:%S %z]`.
    pub time: &'a str,
    /// The request line, escaped, if the request got that far.
    pub line: Option<&'a str>,
    /// Request header values, in [`Format::request_headers`] order, escaped.
    pub headers: &'a [Option<String>],
    /// The status code.
    pub status: u16,
    /// Body bytes sent, `None` when none were.
    pub body: Option<usize>,
    /// The response's bytes (status line and headers, at least), for `{header}o`.
    pub response: &'a [u8],
    /// From the complete request to its answer.
    pub elapsed: Duration,
    /// `http` or `https`.
    pub scheme: &'a str,
}

/// Request headers every format may need, at fixed indices of [`Format::request_headers`].
const REFERER: usize = 0;
const USER_AGENT: usize = 1;
const AUTHORIZATION: usize = 2;
/// Where `X-Forwarded-For` is in [`Fields::headers`]: the access log reads it for `%(h)s`.
pub const FORWARDED_FOR: usize = 3;

impl Format {
    /// Parses `text`; the error says what is wrong and where.
    pub fn compile(text: &str) -> Result<Format, String> {
        let mut request_headers: Vec<String> =
            ["referer", "user-agent", "authorization", "x-forwarded-for"].map(String::from).to_vec();
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(at) = rest.find('%') {
            literal.push_str(&rest[..at]);
            let spec = &rest[at + 1..];
            if let Some(after) = spec.strip_prefix('%') {
                literal.push('%');
                rest = after;
                continue;
            }
            let Some(inner) = spec.strip_prefix('(') else {
                return Err(format!("'%' at byte {at} must start '%(name)s' or be doubled as '%%'"));
            };
            let Some(close) = inner.find(')') else {
                return Err(format!("'%(' at byte {at} has no closing ')'"));
            };
            let name = &inner[..close];
            let mut after = &inner[close + 1..];
            let left = after.starts_with('-');
            after = after.trim_start_matches(['-', ' ', '+', '#', '0']);
            let digits = after.len() - after.trim_start_matches(|c: char| c.is_ascii_digit()).len();
            let width = after[..digits].parse().unwrap_or(0);
            after = &after[digits..];
            match after.chars().next() {
                Some('s') => {}
                Some(c) => {
                    return Err(format!(
                        "'%({name})' is formatted with '{c}': only 's' is supported (gunicorn's atoms are strings)"
                    ));
                }
                None => return Err(format!("'%({name})' needs a conversion such as 's'")),
            }
            rest = &after[1..];
            if !literal.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut literal)));
            }
            let atom = atom(name, &mut request_headers);
            pieces.push(Piece::Atom { atom, width, left, name: name.to_string() });
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            pieces.push(Piece::Text(literal));
        }
        Ok(Format { pieces, request_headers, pid: format!("<{}>", std::process::id()), json: false })
    }

    /// The same atoms rendered as one JSON object per line (`--log-format json`): each atom of the
    /// format once, keyed by its gunicorn name (`{"h":"10.0.0.7","r":"GET / HTTP/1.1","s":200}`),
    /// literal text left out. `s`, `B`, `T`, `M`, `D` and `L` are numbers; every other value is
    /// the text line's value (client bytes already escaped there) as a JSON string.
    pub fn json(mut self) -> Format {
        self.json = true;
        self
    }

    /// The request headers to capture (lower-case), in the order [`Fields::headers`] holds them.
    pub fn request_headers(&self) -> &[String] {
        &self.request_headers
    }

    /// Appends one line (with its newline) to `out`.
    pub fn render(&self, out: &mut String, f: &Fields<'_>) {
        if self.json {
            return self.render_json(out, f);
        }
        let mut value = String::new();
        for piece in &self.pieces {
            let (atom, width, left) = match piece {
                Piece::Text(t) => {
                    out.push_str(t);
                    continue;
                }
                Piece::Atom { atom, width, left, .. } => (atom, *width, *left),
            };
            value.clear();
            self.atom_into(&mut value, atom, f);
            let pad = width.saturating_sub(value.chars().count());
            if !left {
                out.extend(std::iter::repeat_n(' ', pad));
            }
            out.push_str(&value);
            if left {
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push('\n');
    }

    fn render_json(&self, out: &mut String, f: &Fields<'_>) {
        let mut value = String::new();
        let mut seen: Vec<&str> = Vec::new();
        out.push('{');
        for piece in &self.pieces {
            let Piece::Atom { atom, name, .. } = piece else { continue };
            if seen.contains(&name.as_str()) {
                continue;
            }
            if !seen.is_empty() {
                out.push(',');
            }
            seen.push(name);
            value.clear();
            self.atom_into(&mut value, atom, f);
            crate::logjson::push_str(out, name);
            out.push(':');
            let number = matches!(
                atom,
                Atom::Status | Atom::BytesB | Atom::Seconds | Atom::Millis | Atom::Micros | Atom::Decimal
            );
            if number {
                out.push_str(&value);
            } else {
                crate::logjson::push_str(out, &value);
            }
        }
        out.push_str("}\n");
    }

    fn atom_into(&self, v: &mut String, atom: &Atom, f: &Fields<'_>) {
        let header = |i: usize| f.headers.get(i).and_then(|h| h.as_deref());
        let (seconds, micros) = (f.elapsed.as_secs(), f.elapsed.subsec_micros());
        let mut digits = itoa::Buffer::new();
        match atom {
            Atom::Remote => v.push_str(f.remote),
            Atom::Dash | Atom::Unknown => v.push('-'),
            Atom::User => v.push_str(&header(AUTHORIZATION).and_then(basic_user).unwrap_or_else(|| "-".into())),
            Atom::Time => v.push_str(f.time),
            Atom::Line => v.push_str(f.line.unwrap_or("-")),
            Atom::Method => v.push_str(line_part(f.line, 0).unwrap_or("-")),
            Atom::Path => match line_part(f.line, 1) {
                Some(target) => {
                    let path = target.split('?').next().unwrap_or_default();
                    decode_escaped_into(v, path);
                }
                None => v.push('-'),
            },
            // gunicorn's QUERY_STRING: empty when the target has none.
            Atom::Query => match line_part(f.line, 1) {
                Some(target) => v.push_str(target.split_once('?').map_or("", |q| q.1)),
                None => v.push('-'),
            },
            Atom::Protocol => v.push_str(line_part(f.line, 2).unwrap_or("-")),
            Atom::Status => v.push_str(digits.format(f.status)),
            Atom::BytesB => v.push_str(digits.format(f.body.unwrap_or(0))),
            Atom::Bytesb => match f.body {
                Some(n) => v.push_str(digits.format(n)),
                None => v.push('-'),
            },
            Atom::Referer => v.push_str(header(REFERER).unwrap_or("-")),
            Atom::Agent => v.push_str(header(USER_AGENT).unwrap_or("-")),
            Atom::Seconds => v.push_str(digits.format(seconds)),
            Atom::Millis => v.push_str(digits.format(seconds * 1000 + u64::from(micros / 1000))),
            Atom::Micros => v.push_str(digits.format(seconds * 1_000_000 + u64::from(micros))),
            Atom::Decimal => {
                let _ = write!(v, "{seconds}.{micros:06}");
            }
            Atom::Pid => v.push_str(&self.pid),
            Atom::Scheme => v.push_str(f.scheme),
            Atom::RequestHeader(i) => v.push_str(header(*i).unwrap_or("-")),
            Atom::ResponseHeader(name) => response_header(v, f.response, name),
        }
    }
}

fn atom(name: &str, request_headers: &mut Vec<String>) -> Atom {
    if let Some(header) = name.strip_prefix('{') {
        if let Some(h) = header.strip_suffix("}i") {
            let h = h.to_ascii_lowercase();
            let i = request_headers.iter().position(|n| *n == h).unwrap_or_else(|| {
                request_headers.push(h);
                request_headers.len() - 1
            });
            return Atom::RequestHeader(i);
        }
        if let Some(h) = header.strip_suffix("}o") {
            return Atom::ResponseHeader(h.to_ascii_lowercase());
        }
        if header == "wsgi.url_scheme}e" {
            return Atom::Scheme;
        }
        return Atom::Unknown;
    }
    match name {
        "h" => Atom::Remote,
        "l" => Atom::Dash,
        "u" => Atom::User,
        "t" => Atom::Time,
        "r" => Atom::Line,
        "m" => Atom::Method,
        "U" => Atom::Path,
        "q" => Atom::Query,
        "H" => Atom::Protocol,
        "s" => Atom::Status,
        "B" => Atom::BytesB,
        "b" => Atom::Bytesb,
        "f" => Atom::Referer,
        "a" => Atom::Agent,
        "T" => Atom::Seconds,
        "M" => Atom::Millis,
        "D" => Atom::Micros,
        "L" => Atom::Decimal,
        "p" => Atom::Pid,
        _ => Atom::Unknown,
    }
}

/// Percent-decodes an already escaped path into `v`, escaping each decoded byte: decoding after
/// escaping would turn `%0a` or `%1b` back into the raw bytes escaping exists to keep out (a forged
/// log line, terminal escapes). The text between escapes is escape output, printable ASCII, so it
/// is copied as it is; a decoded non-ASCII byte shows as `\xNN`, like any other client byte.
fn decode_escaped_into(v: &mut String, escaped: &str) {
    let bytes = escaped.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let hex = |at: usize| bytes.get(at).and_then(|&b| (b as char).to_digit(16));
        if let (b'%', Some(hi), Some(lo)) = (bytes[i], hex(i + 1), hex(i + 2)) {
            crate::logging::escape_into(v, &[(hi * 16 + lo) as u8]);
            i += 3;
            continue;
        }
        match bytes[i] {
            // Escape output: copied as it is (a `\` here starts an escape, not a client's byte).
            b @ 0x20..=0x7e => v.push(b as char),
            b => crate::logging::escape_into(v, &[b]),
        }
        i += 1;
    }
}

/// The `i`-th space-separated word of the request line (method, target, protocol).
fn line_part(line: Option<&str>, i: usize) -> Option<&str> {
    line?.split(' ').nth(i)
}

/// The user of an (escaped) `Authorization: Basic` value, as gunicorn's `_get_user`.
fn basic_user(value: &str) -> Option<String> {
    let (scheme, token) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(token.trim()).ok()?;
    let user = decoded.split(|&b| b == b':').next()?;
    Some(crate::logging::escape(user))
}

/// Appends the value of response header `name` from `response`'s head, or `-`.
fn response_header(v: &mut String, response: &[u8], name: &str) {
    let head = response.split(|&b| b == b'\n').skip(1).map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    for line in head.take_while(|l| !l.is_empty()) {
        let Some(colon) = line.iter().position(|&b| b == b':') else { continue };
        if line[..colon].eq_ignore_ascii_case(name.as_bytes()) {
            crate::logging::escape_into(v, line[colon + 1..].trim_ascii());
            return;
        }
    }
    v.push('-');
}

#[cfg(test)]
mod tests {
    use super::*;

    const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nServer: hitcore\r\nContent-Length: 2\r\n\r\n42";

    fn line(format: &str, headers: &[(&str, &str)]) -> String {
        let f = Format::compile(format).unwrap();
        let captured: Vec<Option<String>> = f
            .request_headers()
            .iter()
            .map(|n| headers.iter().find(|(h, _)| h.eq_ignore_ascii_case(n)).map(|(_, v)| v.to_string()))
            .collect();
        let fields = Fields {
            remote: "10.0.0.7",
            time: "[02/Dec/2026:10:00:00 +0000]",
            line: Some("GET /a%20b?x=1&y=2 HTTP/1.1"),
            headers: &captured,
            status: 200,
            body: Some(2),
            response: RESPONSE,
            elapsed: Duration::from_micros(2_003_456),
            scheme: "https",
        };
        let mut out = String::new();
        f.render(&mut out, &fields);
        out.pop();
        out
    }

    #[test]
    fn the_default_is_gunicorns_line() {
        assert_eq!(
            line(crate::config::defaults::DEFAULT_ACCESS_LOG_FORMAT, &[("User-Agent", "curl/8.0")]),
            r#"10.0.0.7 - - [02/Dec/2026:10:00:00 +0000] "GET /a%20b?x=1&y=2 HTTP/1.1" 200 2 "-" "curl/8.0""#
        );
    }

    #[test]
    fn each_atom() {
        let cases = [
            ("h", "10.0.0.7"),
            ("l", "-"),
            ("u", "-"),
            ("t", "[02/Dec/2026:10:00:00 +0000]"),
            ("r", "GET /a%20b?x=1&y=2 HTTP/1.1"),
            ("m", "GET"),
            ("U", "/a b"),
            ("q", "x=1&y=2"),
            ("H", "HTTP/1.1"),
            ("s", "200"),
            ("B", "2"),
            ("b", "2"),
            ("f", "-"),
            ("a", "-"),
            ("T", "2"),
            ("M", "2003"),
            ("D", "2003456"),
            ("L", "2.003456"),
            ("{server}o", "hitcore"),
            ("{Content-Length}o", "2"),
            ("{x-missing}o", "-"),
            ("{x-missing}i", "-"),
            ("{home}e", "-"),
            ("{wsgi.url_scheme}e", "https"),
            ("zz", "-"),
        ];
        for (atom, want) in cases {
            assert_eq!(line(&format!("%({atom})s"), &[]), want, "atom {atom}");
        }
        assert_eq!(line("%(p)s", &[]), format!("<{}>", std::process::id()));
    }

    #[test]
    fn headers_user_and_padding() {
        assert_eq!(line("%({X-Request-Id}i)s", &[("x-request-id", "abc")]), "abc");
        // "alice:secret"
        assert_eq!(line("%(u)s", &[("authorization", "Basic YWxpY2U6c2VjcmV0")]), "alice");
        assert_eq!(line("%(u)s", &[("authorization", "Bearer xyz")]), "-");
        assert_eq!(line("%(f)s|%(a)s", &[("Referer", "http://r/"), ("user-agent", "ab")]), "http://r/|ab");
        assert_eq!(line("[%(s)5s][%(m)-5s] 100%%", &[]), "[  200][GET  ] 100%");
    }

    #[test]
    fn without_a_request_line() {
        let f = Format::compile("%(r)s %(m)s %(U)s %(q)s %(H)s %(b)s %(B)s").unwrap();
        let fields = Fields {
            remote: "-",
            time: "",
            line: None,
            headers: &[],
            status: 400,
            body: None,
            response: b"",
            elapsed: Duration::ZERO,
            scheme: "http",
        };
        let mut out = String::new();
        f.render(&mut out, &fields);
        assert_eq!(out, "- - - - - - 0\n");
    }

    #[test]
    fn json_lines_are_keyed_by_atom() {
        let f = Format::compile(r#"%(h)s - "%(r)s" %(s)s %(b)s %(h)s %(L)s %({x-id}i)s %({server}o)s"#).unwrap().json();
        let captured: Vec<Option<String>> =
            f.request_headers().iter().map(|n| (n == "x-id").then(|| "a\\x1bé".to_string())).collect();
        let fields = Fields {
            remote: "10.0.0.7",
            time: "[02/Dec/2026:10:00:00 +0000]",
            line: Some("GET /a\\\"b HTTP/1.1"),
            headers: &captured,
            status: 200,
            body: Some(2),
            response: RESPONSE,
            elapsed: Duration::from_micros(2_003_456),
            scheme: "https",
        };
        let mut out = String::new();
        f.render(&mut out, &fields);
        assert_eq!(
            out,
            "{\"h\":\"10.0.0.7\",\"r\":\"GET /a\\\\\\\"b HTTP/1.1\",\"s\":200,\"b\":\"2\",\"L\":2.003456,\
             \"{x-id}i\":\"a\\\\x1b\\u00e9\",\"{server}o\":\"hitcore\"}\n"
        );
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["r"], "GET /a\\\"b HTTP/1.1");
        assert_eq!(v["{x-id}i"], "a\\x1bé");
    }

    #[test]
    fn bad_formats_say_what_is_wrong() {
        assert!(Format::compile("%(h)d").unwrap_err().contains("only 's'"));
        assert!(Format::compile("%(h").unwrap_err().contains("no closing"));
        assert!(Format::compile("50% off").unwrap_err().contains("'%%'"));
        assert!(Format::compile("%(h)").unwrap_err().contains("needs a conversion"));
    }
}
